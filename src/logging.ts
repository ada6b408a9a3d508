import fs from 'node:fs';
import pino, { type Logger } from 'pino';

/**
 * How far (bytes) the process log may run ahead of whoever reads Gantry's
 * stdout (journald, Docker's log driver, a process manager) before lines
 * are dropped: 8 MiB is ~30,000 request lines, minutes of a busy host.
 */
export const STDOUT_BUFFER_BYTES = 8 * 1024 * 1024;

export interface ProcessLog {
  log: Logger;
  /** Lines dropped so far: stdout's reader fell too far behind, or a write to stdout failed. */
  droppedLines(): number;
}

/**
 * Gantry's process log: pino JSON lines on a file descriptor (stdout), written
 * asynchronously with a bounded buffer.
 *
 * The rule: writing the process log never stops Gantry. stdout is a
 * non-blocking pipe once Node has touched it, and when its reader falls
 * behind a write gets EAGAIN; stdout redirected to a file fails with ENOSPC
 * when the filesystem is full, or EIO. pino's own destination (sonic-boom)
 * sleeps the whole thread 100 ms per EAGAIN when synchronous, emits any
 * other error as an 'error' event nobody handles, and at exit retries every
 * failed write each 100 ms, forever: every request, SSE stream and container
 * watcher would stop with it, or the process would never end. Here the event
 * loop never waits on stdout: lines queue in memory (and leave in writes of
 * 4 KiB or every 250 ms, whichever comes first); past `bufferBytes` lines are
 * dropped, and a write that fails for any reason but EAGAIN drops its lines;
 * both are counted (gantry_process_log_dropped_lines_total) and said in a
 * warning a second later, and the next lines are tried again, so logging
 * resumes by itself once stdout takes writes again. Job logs are not
 * affected: they go to Gantry's store, not to this stream.
 *
 * The queue is flushed on a clean shutdown (`flushLog`) and on process exit
 * (which waits at most EXIT_WAIT_MS for a reader that is behind, so that an
 * exit is never held up by stdout); only SIGKILL can lose what is still queued.
 */
export function processLogger(level: string, o: { fd?: number; bufferBytes?: number } = {}): ProcessLog {
  const bufferBytes = o.bufferBytes ?? STDOUT_BUFFER_BYTES;
  let dropped = 0;
  let reported = 0;
  let reportDue = false;
  let failure: NodeJS.ErrnoException | undefined;
  // Say so in the log itself a second later, once for all drops of that
  // second. That line may be dropped too, and is then counted and reported
  // again (while stdout stays unwritable, one attempt a second); so each
  // report also carries the total, which the first report that gets through
  // makes known.
  const onDrop = (lines: number, err?: NodeJS.ErrnoException): void => {
    dropped += lines;
    if (err) failure = err;
    if (reportDue) return;
    reportDue = true;
    setTimeout(() => {
      reportDue = false;
      const lost = dropped - reported;
      reported = dropped;
      const counts = { droppedLines: lost, droppedLinesTotal: dropped };
      if (failure) log.warn({ ...counts, err: failure }, `stdout cannot be written (${failure.code}): log lines were dropped`);
      else log.warn({ ...counts, bufferBytes }, 'stdout is read too slowly: log lines were dropped');
      failure = undefined;
    }, 1000).unref();
  };
  const batch = new LineBatch(new FdWriter(o.fd ?? 1, bufferBytes, onDrop));
  process.once('exit', () => batch.flushSync());
  const log = pino({ level }, batch);
  return { log, droppedLines: () => dropped };
}

/** Lines are handed over once they reach this many characters, even within one event-loop turn. */
const BATCH_CHARS = 16 * 1024;

/**
 * Collects pino's lines and hands them to the writer joined, as one Buffer,
 * once per event-loop turn (or every BATCH_CHARS): the writer's work is paid
 * per batch instead of per line, and a batch waiting for its write holds its
 * bytes outside V8's heap, where a backlog is no garbage for the major GC
 * (docs/performance.md). One batch is one chunk of the writer's queue, so
 * the buffer bound applies to whole batches.
 */
class LineBatch {
  private lines: string[] = [];
  private chars = 0;
  private scheduled = false;

  constructor(private readonly writer: FdWriter) {}

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
    this.writer.flush(cb);
  }

  flushSync(): void {
    this.handOver();
    this.writer.flushSync();
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
    this.writer.write(Buffer.from(text));
  }
}

/**
 * Writes start once this many bytes are queued (or at the next periodic
 * write), not per line: each write costs a syscall, a thread-pool hand-off
 * and a wake-up of the reader, a large share of a cheap request's CPU.
 */
const MIN_WRITE = 4096;
/** A write hands over at most this much (unless one chunk is larger): no more than Docker's log copier reads at once. */
const MAX_WRITE = 16 * 1024;
const PERIODIC_WRITE_MS = 250;
/** A reader that is behind (EAGAIN) is tried again after this long. */
const BUSY_RETRY_MS = 100;
/** How long the exit flush waits for a reader that is behind before it gives up on the rest. */
const EXIT_WAIT_MS = 5000;

const NEWLINE = 0x0a;

/**
 * An asynchronous writer of whole-line chunks to a file descriptor, with a
 * bounded queue. Every chunk ends with a newline (pino's lines do, and
 * batches join whole lines). Its rules:
 *
 * - a chunk that would take the queue past `limit` bytes is dropped and
 *   counted, never waited for;
 * - EAGAIN (the reader is behind) is retried after BUSY_RETRY_MS;
 * - any other write error (ENOSPC, EIO, EPIPE...) drops and counts the lines
 *   of that write and leaves the rest queued for the next write (a new chunk
 *   or the periodic write), so a failing fd costs one failed write per
 *   batch, never a loop, and logging resumes once the fd takes writes again;
 * - what reaches the fd stays whole lines: after a short write, the rest of
 *   that line is kept (not dropped) and written first once writes succeed.
 */
class FdWriter {
  private queue: Buffer[] = [];
  /** Bytes in `queue`. */
  private queued = 0;
  /** A write of the queue's front is in flight or waiting for its retry: no other starts. */
  private busy = false;
  /** Bytes of the queue's front handed to the kernel in the write in flight (0: none in flight). */
  private inFlight = 0;
  /** Chunks of the queue's front that the write in flight covers. */
  private attempted = 0;
  /** The bytes written so far end within a line. */
  private lineOpen = false;
  private waiters: ((err?: Error) => void)[] = [];

  constructor(
    private readonly fd: number,
    private readonly limit: number,
    private readonly onDrop: (lines: number, err?: NodeJS.ErrnoException) => void,
  ) {
    setInterval(() => {
      if (!this.busy && this.queued > 0) this.writeFront();
    }, PERIODIC_WRITE_MS).unref();
  }

  write(chunk: Buffer): void {
    if (this.queued + chunk.length > this.limit) {
      this.onDrop(countLines(chunk));
      return;
    }
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (!this.busy && this.queued >= MIN_WRITE) this.writeFront();
  }

  /** Calls back once everything queued is written, or with the error of a write that failed. */
  flush(cb: (err?: Error) => void): void {
    if (this.queued === 0) {
      process.nextTick(cb);
      return;
    }
    this.waiters.push(cb);
    if (!this.busy) this.writeFront();
  }

  /**
   * At process exit: writes the queue synchronously, waiting at most
   * EXIT_WAIT_MS for a reader that is behind; a write that fails otherwise
   * ends it. The bytes of a write in flight are left to it (written twice
   * otherwise).
   */
  flushSync(): void {
    const deadline = Date.now() + EXIT_WAIT_MS;
    let skip = this.inFlight;
    for (const chunk of this.queue) {
      let rest = chunk.subarray(Math.min(skip, chunk.length));
      skip -= chunk.length - rest.length;
      while (rest.length > 0) {
        let n = 0;
        try {
          n = fs.writeSync(this.fd, rest);
        } catch (err) {
          if (!isBusy(err)) return;
        }
        if (n > 0) rest = rest.subarray(n);
        else if (Date.now() < deadline) sleepSync(10);
        else return;
      }
    }
    this.queue = [];
    this.queued = 0;
  }

  private writeFront(): void {
    this.busy = true;
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || bytes + this.queue[n]!.length <= MAX_WRITE)) bytes += this.queue[n++]!.length;
    this.inFlight = bytes;
    this.attempted = n;
    fs.writev(this.fd, this.queue.slice(0, n), this.written);
  }

  private readonly retryFront = (): void => this.writeFront();

  private readonly written = (err: NodeJS.ErrnoException | null, n: number): void => {
    this.inFlight = 0;
    // A write that took nothing is tried again later, like EAGAIN.
    if ((err && isBusy(err)) || (!err && n === 0)) {
      setTimeout(this.retryFront, BUSY_RETRY_MS);
      return;
    }
    this.busy = false;
    if (err) {
      this.dropFront(err);
      this.settle(err);
      return;
    }
    this.consume(n);
    if (this.queued >= MIN_WRITE || (this.queued > 0 && this.waiters.length > 0)) this.writeFront();
    else if (this.queued === 0) this.settle();
  };

  /** Removes `n` written bytes from the queue's front. */
  private consume(n: number): void {
    this.queued -= n;
    while (n > 0) {
      const head = this.queue[0]!;
      if (head.length <= n) {
        this.queue.shift();
        n -= head.length;
        this.lineOpen = head[head.length - 1] !== NEWLINE;
      } else {
        this.queue[0] = head.subarray(n);
        this.lineOpen = head[n - 1] !== NEWLINE;
        n = 0;
      }
    }
  }

  /** Drops the chunks of the failed write, all but the rest of a line already begun on the fd. */
  private dropFront(err: NodeJS.ErrnoException): void {
    const failed = this.queue.splice(0, this.attempted);
    if (this.lineOpen) {
      const first = failed[0]!;
      const end = first.indexOf(NEWLINE) + 1 || first.length;
      this.queue.unshift(first.subarray(0, end));
      failed[0] = first.subarray(end);
    }
    let lines = 0;
    for (const chunk of failed) {
      this.queued -= chunk.length;
      lines += countLines(chunk);
    }
    if (lines > 0) this.onDrop(lines, err);
  }

  private settle(err?: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const cb of waiters) cb(err);
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EBUSY';
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function countLines(chunk: Buffer): number {
  let n = 0;
  for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, i + 1)) n += 1;
  return n;
}

/** Resolves once every queued line has been handed to the kernel, or dropped by a write that failed. */
export function flushLog(log: Pick<Logger, 'flush'>): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}
