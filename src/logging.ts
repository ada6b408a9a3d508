import pino, { type Logger } from 'pino';

/** sonic-boom in contentMode 'buffer', whose write takes Buffers (its types only know strings). */
type Destination = Omit<ReturnType<typeof pino.destination>, 'write'> & { write(data: Buffer): boolean };

/**
 * How far (bytes) the process log may run ahead of whoever reads Gantry's
 * stdout (journald, Docker's log driver, a process manager) before lines
 * are dropped: 8 MiB is ~30,000 request lines, minutes of a busy host.
 */
export const STDOUT_BUFFER_BYTES = 8 * 1024 * 1024;

export interface ProcessLog {
  log: Logger;
  /** Lines dropped so far because stdout's reader fell too far behind. */
  droppedLines(): number;
}

/**
 * Gantry's process log: pino JSON lines on a file descriptor (stdout), written
 * asynchronously with a bounded buffer.
 *
 * Why not pino's default (synchronous writes)? stdout is a non-blocking pipe
 * once Node has touched it, and when its reader falls behind, a synchronous
 * write gets EAGAIN and sonic-boom then sleeps the whole thread for 100 ms
 * per retry: every request, SSE stream and container watcher stops until
 * the reader catches up, or forever if it never does. Here the event loop
 * never waits on the reader: lines queue in memory (and leave in writes of
 * 4 KiB or every 250 ms, whichever comes first), and past
 * `bufferBytes` lines are dropped and counted instead
 * (gantry_process_log_dropped_lines_total). Job logs are not affected: they go to
 * Gantry's store, not to this stream.
 *
 * The queue is flushed on a clean shutdown (`flushLog`) and on process exit;
 * only SIGKILL can lose what is still queued.
 */
export function processLogger(level: string, o: { fd?: number; bufferBytes?: number } = {}): ProcessLog {
  // Lines leave in writes of at least 4 KiB, or after at most 250 ms: one
  // write per line cost a status poll 6-13 % of its CPU (a syscall, a
  // thread-pool hand-off and a wake-up of the reader each; bench/ab.ts in
  // docs/performance.md). A minLength above 0 also makes flush(cb) wait for
  // the queue to drain (with 0, sonic-boom calls back at once).
  const destination: Destination = pino.destination({
    dest: o.fd ?? 1,
    sync: false,
    minLength: 4096,
    periodicFlush: 250,
    maxLength: o.bufferBytes ?? STDOUT_BUFFER_BYTES,
    // Batches are handed over as Buffers (LineBatch): their bytes wait for
    // the write off V8's heap.
    contentMode: 'buffer',
  }) as unknown as Destination;
  const batch = new LineBatch(destination);
  // pino's own exit hook flushes the destination, not lines still in the batch.
  process.once('exit', () => batch.flushSync());
  const log = pino({ level }, batch);
  let dropped = 0;
  let reported = 0;
  let reportDue = false;
  // A 'drop' is one batch refused whole: count its lines. Say so in the log
  // itself a second later (that line may be dropped too, and is then
  // counted and reported again).
  destination.on('drop', (refused: Buffer) => {
    dropped += countLines(refused);
    if (reportDue) return;
    reportDue = true;
    setTimeout(() => {
      reportDue = false;
      const lost = dropped - reported;
      reported = dropped;
      log.warn({ droppedLines: lost, bufferBytes: o.bufferBytes ?? STDOUT_BUFFER_BYTES }, 'stdout is read too slowly: log lines were dropped');
    }, 1000).unref();
  });
  return { log, droppedLines: () => dropped };
}

/** Lines are handed over once they reach this many characters, even within one event-loop turn. */
const BATCH_CHARS = 16 * 1024;

/**
 * Collects pino's lines and hands them to the destination joined, as one
 * Buffer, once per event-loop turn (or every BATCH_CHARS). Why: given
 * strings, sonic-boom 4.2 measures the byte length of its whole pending
 * chunk on every write, which flattens (copies) that growing string each
 * time: per line, a copy of up to 16 KiB (~5 % of a status poll's CPU in a
 * perf profile). And strings that wait for the write long enough to be
 * promoted were the largest garbage a poll left for the major GC; a Buffer's
 * bytes are outside V8's heap (docs/performance.md, sixth pass). One batch
 * is one write to the destination, so the buffer bound and drops apply to
 * whole batches.
 */
class LineBatch {
  private lines: string[] = [];
  private chars = 0;
  private scheduled = false;

  constructor(private readonly destination: Destination) {}

  write(line: string): boolean {
    this.lines.push(line);
    this.chars += line.length;
    if (this.chars >= BATCH_CHARS) this.handOver();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.handOverScheduled);
    }
    return true;
  }

  flush(cb: (err?: Error) => void): void {
    this.handOver();
    this.destination.flush(cb);
  }

  flushSync(): void {
    this.handOver();
    this.destination.flushSync();
  }

  private readonly handOverScheduled = (): void => {
    this.scheduled = false;
    this.handOver();
  };

  private handOver(): void {
    if (this.lines.length === 0) return;
    const text = this.lines.length === 1 ? this.lines[0]! : this.lines.join('');
    this.lines = [];
    this.chars = 0;
    this.destination.write(Buffer.from(text));
  }
}

const NEWLINE = 0x0a;

function countLines(batch: Buffer): number {
  let n = 0;
  for (let i = batch.indexOf(NEWLINE); i !== -1; i = batch.indexOf(NEWLINE, i + 1)) n += 1;
  return n;
}

/** Resolves once every queued line has been handed to the kernel. */
export function flushLog(log: Pick<Logger, 'flush'>): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}
