import pino, { type Logger } from 'pino';

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
 * `bufferBytes` a line is dropped and counted instead
 * (gantry_process_log_dropped_lines_total). Job logs are not affected: they go to
 * Gantry's store, not to this stream.
 *
 * The queue is flushed on a clean shutdown (`flushLog`) and on process exit
 * (pino's own exit hook); only SIGKILL can lose what is still queued.
 */
export function processLogger(level: string, o: { fd?: number; bufferBytes?: number } = {}): ProcessLog {
  // Lines leave in writes of at least 4 KiB, or after at most 250 ms: one
  // write per line cost a status poll 6-13 % of its CPU (a syscall, a
  // thread-pool hand-off and a wake-up of the reader each; bench/ab.ts in
  // docs/performance.md). A minLength above 0 also makes flush(cb) wait for
  // the queue to drain (with 0, sonic-boom calls back at once).
  const destination = pino.destination({
    dest: o.fd ?? 1,
    sync: false,
    minLength: 4096,
    periodicFlush: 250,
    maxLength: o.bufferBytes ?? STDOUT_BUFFER_BYTES,
  });
  const log = pino({ level }, destination);
  let dropped = 0;
  let reported = 0;
  let reportDue = false;
  // pino writes one line per write(), so one 'drop' is one line. Say so in
  // the log itself a second later (that line may be dropped too, and is then
  // counted and reported again).
  destination.on('drop', () => {
    dropped += 1;
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

/** Resolves once every queued line has been handed to the kernel. */
export function flushLog(log: Pick<Logger, 'flush'>): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}
