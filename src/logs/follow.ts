import type { ServerResponse } from 'node:http';
import type { JobEventHub } from '../jobs/events.js';
import type { Attempt } from '../model/attempt.js';
import type { GpuSample, GpuWarning } from '../model/gpu-telemetry.js';
import type { Job } from '../model/job.js';
import type { LogChunk, LogLine, LogStream } from '../model/log.js';
import { isTerminal } from '../model/states.js';
import { decodeChunk } from '../store/chunk-codec.js';
import type { LogStore } from '../store/store.js';

/** A batch ends at the first chunk boundary past this many lines (chunks hold ≤ 2,000). */
const BATCH_LINES = 2000;
/** Rows asked of the store per query (read lazily, so unused ones cost nothing). */
const BATCH_CHUNKS = 8;
/** Formatted chunks kept for followers to share (each a few hundred KB of text). */
const SHARED_CHUNKS = 32;
/** GPU warnings held for a follower between writes; they are rare (one per policy per attempt), so this is never reached in practice. */
const PENDING_WARNINGS_MAX = 16;

type Format = FollowOptions['format'];
interface Formatted {
  /** A shared chunk is kept encoded, so no follower encodes it again. */
  data: string | Buffer;
  lines: number;
  lastSeq: number;
}

/**
 * Chunks formatted for clients, shared by every follower of the same job
 * reading the same chunk the same way (format and stream filter): with 100
 * clients on one busy job, each chunk is read, parsed and formatted once,
 * not 100 times. Stored chunks never change, so an entry never goes stale.
 * A small LRU: followers near the head of a live log share it.
 */
class SharedChunks {
  private readonly byFormat = new WeakMap<Format, Map<string, Formatted>>();

  private map(format: Format): Map<string, Formatted> {
    let m = this.byFormat.get(format);
    if (!m) this.byFormat.set(format, (m = new Map()));
    return m;
  }

  /** The chunk starting at firstSeq, if a follower formatted it lately. */
  get(jobId: string, firstSeq: number, stream: LogStream | undefined, format: Format): Formatted | undefined {
    const m = this.map(format);
    const key = `${jobId}\n${firstSeq}\n${stream ?? ''}`;
    const hit = m.get(key);
    if (hit) {
      m.delete(key); // most recently used last
      m.set(key, hit);
    }
    return hit;
  }

  /**
   * Formats a chunk read from the store, and keeps it for the job's other
   * followers when there are any (kept text outlives the young generation;
   * with one follower it would only grow the heap).
   */
  format(
    jobId: string,
    chunk: LogChunk,
    afterSeq: number,
    stream: LogStream | undefined,
    format: Format,
    keep: boolean,
    untilSeq: number | null,
  ): Formatted {
    if (untilSeq !== null && chunk.lastSeq > untilSeq) {
      // Cut at the end of an attempt: a part of the chunk, never shared.
      const lines = decodeChunk(chunk, afterSeq, stream).filter((l) => l.seq <= untilSeq);
      return render(lines, format, untilSeq);
    }
    const f = render(decodeChunk(chunk, afterSeq, stream), format, chunk.lastSeq);
    if (keep && afterSeq < chunk.firstSeq) {
      const m = this.map(format);
      if (m.size >= SHARED_CHUNKS) m.delete(m.keys().next().value!);
      const encoded = { ...f, data: Buffer.from(f.data) };
      m.set(`${jobId}\n${chunk.firstSeq}\n${stream ?? ''}`, encoded);
      return encoded;
    }
    return f;
  }
}

function render(lines: LogLine[], format: Format, lastSeq: number): Formatted {
  let text = '';
  for (const l of lines) text += format.line(l);
  return { data: text, lines: lines.length, lastSeq };
}

const shared = new SharedChunks();

/** Store reads in flight, by job, position and size. */
const reading = new Map<string, Promise<LogChunk[]>>();

/**
 * Reads chunks from the store, once for every follower asking for the same
 * ones at the same time: followers of a busy job all wait at its head, and
 * a read each would hold as many copies of the same rows in memory.
 */
function readChunks(store: LogStore, jobId: string, afterSeq: number, lines: number): Promise<LogChunk[]> {
  const key = `${jobId}\n${afterSeq}\n${lines}`;
  let read = reading.get(key);
  if (read === undefined) {
    read = store.chunks(jobId, afterSeq, { chunks: BATCH_CHUNKS, lines }).finally(() => reading.delete(key));
    reading.set(key, read);
  }
  return read;
}

export interface FollowOptions {
  jobId: string;
  afterSeq: number;
  stream: LogStream | undefined;
  follow: boolean;
  heartbeatMs: number;
  stallMs: number;
  store: LogStore;
  hub: JobEventHub;
  currentJob: () => Promise<Job>;
  /** Only this attempt's lines (the caller starts `afterSeq` at its first); the log ends with the attempt. */
  attempt?: number | undefined;
  res: ServerResponse;
  /** Also send the job's GPU samples and warnings as they are taken (only the latest sample is kept for a slow client). */
  telemetry?: boolean | undefined;
  /** How a line, a status change, a GPU sample or warning, and the end are written (SSE or plain text). */
  format: {
    line: (l: LogLine) => string;
    status?: (job: Job) => string;
    telemetry?: (sample: GpuSample) => string;
    gpuWarning?: (warning: GpuWarning) => string;
    end?: (job: Job) => string;
    heartbeat?: string;
  };
}

/**
 * Writes a job's log to one client, reading from the store at the client's
 * own pace: nothing is buffered per client beyond one batch (whole stored
 * chunks, about 2,000 lines), so a slow reader costs no memory. A reader
 * that stays stalled longer than stallMs is dropped (it can resume with
 * Last-Event-ID). Every listener and timer is released when the client
 * goes away.
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
  let pendingSample: GpuSample | null = null;
  const pendingWarnings: GpuWarning[] = [];
  const offTelemetry =
    o.telemetry && o.format.telemetry
      ? o.hub.subscribe(o.jobId, 'telemetry', (sample) => {
          pendingSample = sample;
          poke();
        })
      : () => undefined;
  const offWarning =
    o.telemetry && o.format.gpuWarning
      ? o.hub.subscribe(o.jobId, 'gpuWarning', (warning) => {
          if (pendingWarnings.length < PENDING_WARNINGS_MAX) pendingWarnings.push(warning);
          poke();
        })
      : () => undefined;
  const onClose = () => {
    closed = true;
    poke();
  };
  res.on('close', onClose);
  const heartbeat = o.follow && o.format.heartbeat ? setInterval(() => void write(o.format.heartbeat!), o.heartbeatMs) : null;

  async function write(chunk: string | (string | Buffer)[]): Promise<void> {
    if (closed) return;
    let ok: boolean;
    if (typeof chunk === 'string') ok = res.write(chunk);
    else {
      // One writev for the batch's pieces.
      res.cork();
      ok = true;
      for (const piece of chunk) ok = res.write(piece) && ok;
      res.uncork();
    }
    if (ok) return;
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
      if (pendingSample) {
        const sample = pendingSample;
        pendingSample = null;
        await write(o.format.telemetry!(sample));
      }
      while (pendingWarnings.length > 0) await write(o.format.gpuWarning!(pendingWarnings.shift()!));
      // Read the job before the lines: if it is terminal now, every line it
      // will ever have is already stored (capture finishes first).
      const job = await o.currentJob();
      // Likewise, once the attempt asked for has ended, all its lines are stored.
      const untilSeq = o.attempt === undefined ? null : attemptLogBounds(job.attempts, o.attempt).untilSeq;
      // Whole stored chunks, until a batch is full or the store has no more;
      // chunks another follower formatted lately are taken from memory.
      const pieces: (string | Buffer)[] = [];
      let count = 0;
      const batchStart = cursor;
      for (;;) {
        if (untilSeq !== null && cursor >= untilSeq) break;
        let hit: Formatted | undefined;
        while (
          count < BATCH_LINES &&
          (hit = shared.get(o.jobId, cursor + 1, o.stream, o.format)) &&
          (untilSeq === null || hit.lastSeq <= untilSeq)
        ) {
          pieces.push(hit.data);
          count += hit.lines;
          cursor = hit.lastSeq;
        }
        if (count >= BATCH_LINES) break;
        const keep = o.hub.followers(o.jobId) > 1;
        const wanted = BATCH_LINES - count;
        const chunks = await readChunks(o.store, o.jobId, cursor, wanted);
        let records = 0;
        for (const c of chunks) {
          // Followers reading the same chunk wait on the store together;
          // the first one back formats it, the others take its copy.
          const whole = cursor + 1 === c.firstSeq && (untilSeq === null || c.lastSeq <= untilSeq);
          const f =
            (whole ? shared.get(o.jobId, c.firstSeq, o.stream, o.format) : undefined) ??
            shared.format(o.jobId, c, cursor, o.stream, o.format, keep, untilSeq);
          if (f.lines > 0) pieces.push(f.data);
          count += f.lines;
          records += f.lastSeq - Math.max(cursor, c.firstSeq - 1);
          cursor = f.lastSeq;
          if (f.lastSeq < c.lastSeq) break;
        }
        const exhausted = chunks.length < BATCH_CHUNKS && records < wanted;
        // Filtered-out chunks add nothing: keep reading until lines or the end.
        if (count > 0 || exhausted) break;
      }
      if (count > 0) {
        if (o.attempt !== undefined && untilSeq === null) {
          // The attempt may have ended while the batch was read, and the
          // next one written its first lines: then read the batch again,
          // cut at the attempt's end.
          const ended = attemptLogBounds((await o.currentJob()).attempts, o.attempt).untilSeq;
          if (ended !== null && cursor > ended) {
            cursor = batchStart;
            continue;
          }
        }
        await write(pieces);
        continue;
      }
      if (!o.follow || isTerminal(job.state) || untilSeq !== null) {
        if (o.format.end) await write(o.format.end(job));
        return;
      }
      if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    offAppend();
    offStatus();
    offTelemetry();
    offWarning();
    res.off('close', onClose);
    if (heartbeat) clearInterval(heartbeat);
    if (!closed) res.end();
  }
}

/**
 * Where attempt n's lines are in its job's log: after `afterSeq`, up to
 * `untilSeq` once it has ended (null while it runs). Sequence numbers run
 * on across attempts, so an attempt's lines start after the last line of
 * the attempts before it.
 */
export function attemptLogBounds(attempts: readonly Attempt[], n: number): { afterSeq: number; untilSeq: number | null } {
  let afterSeq = 0;
  for (const a of attempts) {
    if (a.attempt === n) return { afterSeq, untilSeq: Math.max(afterSeq, a.lastLogSeq ?? 0) };
    if (a.attempt < n) afterSeq = Math.max(afterSeq, a.lastLogSeq ?? 0);
  }
  return { afterSeq, untilSeq: null };
}
