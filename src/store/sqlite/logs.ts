import type { Statement } from 'better-sqlite3';
import { FencedError } from '../../model/errors.js';
import { EMPTY_LOG_STATE, type LogChunk, type LogLine, type LogState, type LogStream, type NewLogRecord } from '../../model/log.js';
import { isTerminal, type JobState } from '../../model/states.js';
import { ChunkConflictError, encodeChunk, STREAM_NAMES, unpackChunk } from '../chunk-codec.js';
import type { Fence, LogStore } from '../store.js';
import type { Db } from './db.js';
import { writing } from './errors.js';

interface LogStateRow {
  next_seq: number;
  stdout_records: number;
  stderr_records: number;
  bytes: number;
  truncated: number;
  last_stdout: string | null;
  error: string | null;
  complete: number;
}

/**
 * Append-only log storage in SQLite. Lines are stored in chunks (one row per
 * capture flush) because a row per line costs several times the CPU on a
 * large log; a chunk's first and last sequence numbers keep range reads
 * indexed.
 */
export class SqliteLogStore implements LogStore {
  private readonly insertChunk: Statement;
  private readonly storedChunk: Statement;
  private readonly upsertState: Statement;
  private readonly getState: Statement;
  private readonly chunksAfter: Statement;
  private readonly chunksDesc: Statement;
  private readonly deleteChunks: Statement;
  private readonly deleteState: Statement;
  private readonly totalsStmt: Statement;
  private readonly ownerStmt: Statement;

  constructor(private readonly db: Db) {
    this.insertChunk = db.prepare(
      `INSERT INTO log_chunks (job_id, first_seq, last_seq, lines) VALUES (?, ?, ?, ?) ON CONFLICT (job_id, first_seq) DO NOTHING`,
    );
    this.storedChunk = db.prepare(`SELECT last_seq AS lastSeq, lines FROM log_chunks WHERE job_id = ? AND first_seq = ?`);
    this.upsertState = db.prepare(
      `INSERT INTO log_state (job_id, next_seq, stdout_records, stderr_records, bytes, truncated, last_stdout, error, complete)
       VALUES (@jobId, @nextSeq, @stdoutRecords, @stderrRecords, @bytes, @truncated, @lastStdout, @error, @complete)
       ON CONFLICT(job_id) DO UPDATE SET next_seq = excluded.next_seq, stdout_records = excluded.stdout_records,
         stderr_records = excluded.stderr_records, bytes = excluded.bytes, truncated = excluded.truncated,
         last_stdout = excluded.last_stdout, error = excluded.error, complete = excluded.complete`,
    );
    this.getState = db.prepare(`SELECT * FROM log_state WHERE job_id = ?`);
    // Chunks do not overlap, so the one holding afterSeq + 1 is the last one
    // starting at or before it: seeking there keeps a read at the end of a
    // long log from scanning every earlier chunk (last_seq is not indexed).
    this.chunksAfter = db.prepare(
      `SELECT first_seq AS firstSeq, last_seq AS lastSeq, lines FROM log_chunks
       WHERE job_id = @jobId AND last_seq > @afterSeq
         AND first_seq >= COALESCE((SELECT first_seq FROM log_chunks WHERE job_id = @jobId AND first_seq <= @afterSeq + 1 ORDER BY first_seq DESC LIMIT 1), 0)
       ORDER BY first_seq LIMIT @max`,
    );
    this.chunksDesc = db.prepare(
      `SELECT first_seq, lines FROM log_chunks WHERE job_id = ? AND first_seq < ? ORDER BY first_seq DESC LIMIT 16`,
    );
    this.deleteChunks = db.prepare(`DELETE FROM log_chunks WHERE job_id = ?`);
    this.deleteState = db.prepare(`DELETE FROM log_state WHERE job_id = ?`);
    this.totalsStmt = db.prepare(
      `SELECT COALESCE(SUM(bytes), 0) AS bytes, COALESCE(SUM(stdout_records), 0) AS stdoutRecords,
              COALESCE(SUM(stderr_records), 0) AS stderrRecords, COALESCE(SUM(truncated), 0) AS truncatedJobs FROM log_state`,
    );
    this.ownerStmt = db.prepare(`SELECT node, attempt, node_epoch, state FROM jobs WHERE id = ?`);
  }

  /** Throws FencedError unless the job is still the fence's node's and attempt's, held by no newer process of the node, and not ended. */
  private checkFence(jobId: string, fence: Fence | undefined): void {
    if (!fence) return;
    const job = this.ownerStmt.get(jobId) as { node: string | null; attempt: number; node_epoch: number; state: JobState } | undefined;
    let detail: string | null = null;
    if (!job) detail = 'it does not exist';
    else if (job.node !== fence.node) detail = job.node === null ? 'it was given back to the queue' : `node ${job.node} has it now`;
    else if (job.attempt !== fence.attempt) detail = `it is on attempt ${job.attempt}, not ${fence.attempt}`;
    else if (job.node_epoch > fence.epoch) detail = `a newer process of node ${job.node} (epoch ${job.node_epoch}) holds it`;
    else if (isTerminal(job.state)) detail = `it has ended (${job.state})`;
    if (detail !== null) throw new FencedError(jobId, detail);
  }

  async state(jobId: string): Promise<LogState> {
    const r = this.getState.get(jobId) as LogStateRow | undefined;
    if (!r) return { ...EMPTY_LOG_STATE };
    return {
      nextSeq: r.next_seq,
      stdoutRecords: r.stdout_records,
      stderrRecords: r.stderr_records,
      bytes: r.bytes,
      truncated: r.truncated === 1,
      lastStdout: r.last_stdout,
      error: r.error,
      complete: r.complete === 1,
    };
  }

  /**
   * Idempotent by sequence: a chunk already stored with the same records is
   * this append repeated after its reply was lost; it committed with its
   * state, so nothing is written again. Other records there throw
   * ChunkConflictError.
   */
  async append(jobId: string, records: readonly NewLogRecord[], next: LogState, fence?: Fence): Promise<void> {
    writing(() =>
      this.db.transaction(() => {
        this.checkFence(jobId, fence);
        if (records.length > 0) {
          const [first, last, lines] = [next.nextSeq - records.length, next.nextSeq - 1, encodeChunk(records)];
          if (this.insertChunk.run(jobId, first, last, lines).changes === 0) {
            const stored = this.storedChunk.get(jobId, first) as { lastSeq: number; lines: string } | undefined;
            if (stored?.lastSeq === last && stored.lines === lines) return;
            throw new ChunkConflictError(jobId, first, last);
          }
        }
        this.upsert(jobId, next);
      })(),
    );
  }

  async saveState(jobId: string, s: LogState, fence?: Fence): Promise<void> {
    writing(() =>
      this.db.transaction(() => {
        this.checkFence(jobId, fence);
        this.upsert(jobId, s);
      })(),
    );
  }

  private upsert(jobId: string, s: LogState): void {
    this.upsertState.run({
      jobId,
      nextSeq: s.nextSeq,
      stdoutRecords: s.stdoutRecords,
      stderrRecords: s.stderrRecords,
      bytes: s.bytes,
      truncated: s.truncated ? 1 : 0,
      lastStdout: s.lastStdout,
      error: s.error,
      complete: s.complete ? 1 : 0,
    });
  }

  async chunks(jobId: string, afterSeq: number, limit: { chunks: number; lines: number }): Promise<LogChunk[]> {
    const out: LogChunk[] = [];
    let lines = 0;
    // Lazily: rows past the line limit are never loaded.
    for (const c of this.chunksAfter.iterate({ jobId, afterSeq, max: limit.chunks }) as IterableIterator<LogChunk>) {
      out.push(c);
      lines += c.lastSeq - Math.max(afterSeq, c.firstSeq - 1);
      if (lines >= limit.lines) break;
    }
    return out;
  }

  async tail(jobId: string, n: number, stream?: LogStream): Promise<LogLine[]> {
    const out: LogLine[] = [];
    let before = Number.MAX_SAFE_INTEGER;
    while (out.length < n) {
      let any = false;
      for (const row of this.chunksDesc.iterate(jobId, before) as IterableIterator<{ first_seq: number; lines: string }>) {
        any = true;
        const { codes, times, lines } = unpackChunk(row.lines);
        for (let i = lines.length - 1; i >= 0 && out.length < n; i--) {
          const name = STREAM_NAMES[codes[i]!]!;
          if (stream === undefined || name === stream) {
            out.push({ seq: row.first_seq + i, stream: name, time: new Date(times[i]!).toISOString(), line: lines[i]! });
          }
        }
        before = row.first_seq;
        if (out.length >= n) break;
      }
      if (!any) break;
    }
    return out.reverse();
  }

  async deleteJob(jobId: string): Promise<void> {
    writing(() =>
      this.db.transaction(() => {
        this.deleteChunks.run(jobId);
        this.deleteState.run(jobId);
      })(),
    );
  }

  async totals(): Promise<{ bytes: number; stdoutRecords: number; stderrRecords: number; truncatedJobs: number }> {
    return this.totalsStmt.get() as { bytes: number; stdoutRecords: number; stderrRecords: number; truncatedJobs: number };
  }
}
