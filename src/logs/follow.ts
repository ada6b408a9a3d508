import type { ServerResponse } from 'node:http';
import type { Job } from '../jobs/schema.js';
import { isTerminal } from '../jobs/states.js';
import type { JobHub } from './hub.js';
import type { LogLine, LogStore, LogStream } from './store.js';

const BATCH = 500;

export interface FollowOptions {
  jobId: string;
  afterSeq: number;
  stream: LogStream | undefined;
  follow: boolean;
  heartbeatMs: number;
  stallMs: number;
  store: LogStore;
  hub: JobHub;
  currentJob: () => Job;
  res: ServerResponse;
  /** How a line, a status change and the end are written (SSE or plain text). */
  format: {
    line: (l: LogLine) => string;
    status?: (job: Job) => string;
    end?: (job: Job) => string;
    heartbeat?: string;
  };
}

/**
 * Writes a job's log to one client, reading from the store at the client's
 * own pace: nothing is buffered per client beyond one batch, so a slow
 * reader costs no memory. A reader that stays stalled longer than stallMs is
 * dropped (it can resume with Last-Event-ID). Every listener and timer is
 * released when the client goes away.
 */
export async function followLog(o: FollowOptions): Promise<void> {
  const { res } = o;
  let closed = false;
  let wake: (() => void) | null = null;
  let dirty = true;
  let pendingStatus: Job | null = null;
  const poke = () => {
    dirty = true;
    const w = wake;
    wake = null;
    w?.();
  };
  const offAppend = o.hub.subscribe(o.jobId, 'append', poke);
  const offStatus = o.hub.subscribe(o.jobId, 'status', (job) => {
    if (o.format.status) pendingStatus = job;
    poke();
  });
  const onClose = () => {
    closed = true;
    poke();
  };
  res.on('close', onClose);
  const heartbeat =
    o.follow && o.format.heartbeat ? setInterval(() => void write(o.format.heartbeat!), o.heartbeatMs) : null;

  async function write(chunk: string): Promise<void> {
    if (closed) return;
    if (res.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        // Stalled past the limit: drop the client rather than buffer for it.
        res.destroy();
        resolve();
      }, o.stallMs);
      const done = () => {
        clearTimeout(timer);
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }

  try {
    let cursor = o.afterSeq;
    for (;;) {
      if (closed) return;
      dirty = false;
      if (pendingStatus) {
        const job = pendingStatus;
        pendingStatus = null;
        await write(o.format.status!(job));
      }
      // Read the job before the lines: if it is terminal now, every line it
      // will ever have is already stored (capture finishes first).
      const job = o.currentJob();
      const { lines, cursor: next } = o.store.read(o.jobId, cursor, BATCH, o.stream);
      cursor = next;
      if (lines.length > 0) {
        let chunk = '';
        for (const l of lines) chunk += o.format.line(l);
        await write(chunk);
        continue;
      }
      if (!o.follow || isTerminal(job.state)) {
        if (o.format.end) await write(o.format.end(job));
        return;
      }
      if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    offAppend();
    offStatus();
    res.off('close', onClose);
    if (heartbeat) clearInterval(heartbeat);
    if (!closed) res.end();
  }
}
