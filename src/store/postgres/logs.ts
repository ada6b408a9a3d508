import type pg from 'pg';
import { FencedError } from '../../model/errors.js';
import { EMPTY_LOG_STATE, type LogChunk, type LogLine, type LogState, type LogStream, type NewLogRecord } from '../../model/log.js';
import { ChunkConflictError, encodeChunk, STREAM_NAMES, unpackChunk } from '../chunk-codec.js';
import { ENDED_SQL } from '../job-row.js';
import type { Fence, LogStore } from '../store.js';
import { pgText, read, transaction, write } from './db.js';
import type { LogAnnouncer } from './log-announcer.js';

interface LogStateRow {
  next_seq: number;
  stdout_records: number;
  stderr_records: number;
  bytes: number;
  truncated: boolean;
  last_stdout: string | null;
  error: string | null;
  complete: boolean;
}

/**
 * One statement per log write, so a capture flush is one round trip: the
 * fence, the chunk and the capture's state are one implicit transaction;
 * `storedTo` (the last record stored, when the state was written) is
 * announced to the other nodes later, batched (log-announcer.ts). With a
 * fence, `f` is the job's row only while the job is still the node's, for
 * that attempt, held by no newer process of the node, and not ended; FOR SHARE holds it until the write commits,
 * so an `expire` settling the job (it locks the row FOR UPDATE) comes
 * wholly before or after it. Without the row nothing is written, and
 * `owned` says so. Idempotent by sequence: a chunk whose first seq is
 * already stored is not written again, nor is the state that committed
 * with it; `inserted` 0 and `stored` (the stored records, when they span
 * the same seqs) let write() tell the same append repeated after a lost
 * reply from another writer's.
 */
function logWrite(o: { fenced: boolean; chunk: boolean }): string {
  const p = (() => {
    let n = 0;
    return () => `$${++n}`;
  })();
  const job = p();
  const f = o.fenced
    ? `SELECT id FROM jobs WHERE id = ${job} AND node = ${p()} AND attempt = ${p()} AND node_epoch <= ${p()} AND state NOT IN ${ENDED_SQL} FOR SHARE`
    : `SELECT ${job}::text AS id`;
  const chunk = o.chunk ? { first: p(), last: p(), lines: p() } : null;
  const c = chunk
    ? `, c AS (INSERT INTO log_chunks (job_id, first_seq, last_seq, lines)
        SELECT f.id, ${chunk.first}::bigint, ${chunk.last}::bigint, ${chunk.lines}::bytea FROM f
        ON CONFLICT (job_id, first_seq) DO NOTHING RETURNING 1)`
    : '';
  // A chunk already there: the statement's snapshot shows the stored one, for write() to compare.
  const repeated = chunk
    ? `, CASE WHEN NOT EXISTS (SELECT 1 FROM c) THEN (SELECT lines FROM log_chunks
        WHERE job_id = ${job} AND first_seq = ${chunk.first}::bigint AND last_seq = ${chunk.last}::bigint) END AS stored,
      (SELECT COUNT(*) FROM c)::int AS inserted`
    : '';
  const state = Array.from({ length: 8 }, p);
  return `
  WITH f AS (${f})${c},
  s AS (
    INSERT INTO log_state (job_id, next_seq, stdout_records, stderr_records, bytes, truncated, last_stdout, error, complete)
    SELECT f.id, ${state[0]}::bigint, ${state[1]}::bigint, ${state[2]}::bigint, ${state[3]}::bigint, ${state[4]}::boolean, ${state[5]}::text, ${state[6]}::text, ${state[7]}::boolean FROM f${chunk ? ' WHERE EXISTS (SELECT 1 FROM c)' : ''}
    ON CONFLICT (job_id) DO UPDATE SET next_seq = excluded.next_seq, stdout_records = excluded.stdout_records,
      stderr_records = excluded.stderr_records, bytes = excluded.bytes, truncated = excluded.truncated,
      last_stdout = excluded.last_stdout, error = excluded.error, complete = excluded.complete
    RETURNING job_id, next_seq
  )
  SELECT (SELECT COUNT(*) FROM f)::int AS owned,
    (SELECT s.next_seq - 1 FROM s) AS "storedTo"${repeated}`;
}
const LOG_WRITES = {
  append: logWrite({ fenced: false, chunk: true }),
  appendFenced: logWrite({ fenced: true, chunk: true }),
  state: logWrite({ fenced: false, chunk: false }),
  stateFenced: logWrite({ fenced: true, chunk: false }),
};
const GET_STATE = `SELECT next_seq, stdout_records, stderr_records, bytes, truncated, last_stdout, error, complete FROM log_state WHERE job_id = $1`;
// Chunks do not overlap, so the one holding afterSeq + 1 is the last one
// starting at or before it: seeking there keeps a read at the end of a long
// log from scanning every earlier chunk (last_seq is not indexed). A chunk is
// returned while the records before it (past afterSeq) are fewer than the
// line limit, so rows past it are never sent.
const CHUNKS_AFTER = `
  SELECT first_seq, last_seq, lines FROM (
    SELECT first_seq, last_seq, lines,
      SUM(last_seq - GREATEST($2, first_seq - 1)) OVER (ORDER BY first_seq) - (last_seq - GREATEST($2, first_seq - 1)) AS before
    FROM log_chunks
    WHERE job_id = $1 AND last_seq > $2
      AND first_seq >= COALESCE((SELECT first_seq FROM log_chunks WHERE job_id = $1 AND first_seq <= $2 + 1 ORDER BY first_seq DESC LIMIT 1), 0)
    ORDER BY first_seq
    LIMIT $3
  ) c
  WHERE before < $4
  ORDER BY first_seq`;
const CHUNKS_DESC = `SELECT first_seq, lines FROM log_chunks WHERE job_id = $1 AND first_seq < $2 ORDER BY first_seq DESC LIMIT 16`;
const TOTALS = `
  SELECT COALESCE(SUM(bytes), 0)::bigint AS bytes, COALESCE(SUM(stdout_records), 0)::bigint AS "stdoutRecords",
         COALESCE(SUM(stderr_records), 0)::bigint AS "stderrRecords", COUNT(*) FILTER (WHERE truncated) AS "truncatedJobs"
  FROM log_state`;

/**
 * Append-only log storage in PostgreSQL, in the SQLite store's chunks (one
 * row per capture flush, in chunk-codec's stored form). The text is kept as
 * UTF-8 bytes: a log line may hold NUL, which PostgreSQL text cannot.
 */
export class PgLogStore implements LogStore {
  constructor(
    private readonly pool: pg.Pool,
    /** Tells the other nodes, batched, whose logs grew. */
    private readonly announcer: LogAnnouncer,
  ) {}

  async state(jobId: string): Promise<LogState> {
    const [r] = await read<LogStateRow>(this.pool, { name: 'gantry_log_state', text: GET_STATE, values: [jobId] });
    if (!r) return { ...EMPTY_LOG_STATE };
    return {
      nextSeq: r.next_seq,
      stdoutRecords: r.stdout_records,
      stderrRecords: r.stderr_records,
      bytes: r.bytes,
      truncated: r.truncated,
      lastStdout: r.last_stdout,
      error: r.error,
      complete: r.complete,
    };
  }

  async append(jobId: string, records: readonly NewLogRecord[], next: LogState, fence?: Fence): Promise<void> {
    if (records.length === 0) return this.saveState(jobId, next, fence);
    const chunk = Buffer.from(encodeChunk(records), 'utf8');
    await this.write(jobId, fence, [next.nextSeq - records.length, next.nextSeq - 1, chunk], next);
  }

  async saveState(jobId: string, state: LogState, fence?: Fence): Promise<void> {
    await this.write(jobId, fence, null, state);
  }

  /** One log write (see logWrite); FencedError when the fence no longer holds. */
  private async write(jobId: string, fence: Fence | undefined, chunk: [number, number, Buffer] | null, s: LogState): Promise<void> {
    const key = chunk ? (fence ? 'appendFenced' : 'append') : fence ? 'stateFenced' : 'state';
    const values = [
      jobId,
      ...(fence ? [fence.node, fence.attempt, fence.epoch] : []),
      ...(chunk ?? []),
      s.nextSeq,
      s.stdoutRecords,
      s.stderrRecords,
      s.bytes,
      s.truncated,
      pgText(s.lastStdout),
      pgText(s.error),
      s.complete,
    ];
    const [row] = await write<{ owned: number; storedTo: number | null; inserted?: number; stored?: Buffer | null }>(this.pool, {
      name: `gantry_log_write_${key}`,
      text: LOG_WRITES[key],
      values,
    });
    if (fence && row?.owned !== 1) {
      throw new FencedError(
        jobId,
        `its logs can no longer be written by node ${fence.node} (attempt ${fence.attempt}, epoch ${fence.epoch})`,
      );
    }
    // Its chunk already stored with the same records: this append, repeated after a lost reply, is done.
    if (chunk && row?.inserted === 0 && !row.stored?.equals(chunk[2])) throw new ChunkConflictError(jobId, chunk[0], chunk[1]);
    if (row?.storedTo != null) this.announcer.note(jobId, row.storedTo);
  }

  async chunks(jobId: string, afterSeq: number, limit: { chunks: number; lines: number }): Promise<LogChunk[]> {
    const rows = await read<{ first_seq: number; last_seq: number; lines: Buffer }>(this.pool, {
      name: 'gantry_log_chunks_after',
      text: CHUNKS_AFTER,
      values: [jobId, afterSeq, limit.chunks, limit.lines],
    });
    return rows.map((r) => ({ firstSeq: r.first_seq, lastSeq: r.last_seq, lines: r.lines.toString('utf8') }));
  }

  async tail(jobId: string, n: number, stream?: LogStream): Promise<LogLine[]> {
    const out: LogLine[] = [];
    let before = Number.MAX_SAFE_INTEGER;
    while (out.length < n) {
      const rows = await read<{ first_seq: number; lines: Buffer }>(this.pool, {
        name: 'gantry_log_chunks_desc',
        text: CHUNKS_DESC,
        values: [jobId, before],
      });
      for (const row of rows) {
        const { codes, times, lines } = unpackChunk(row.lines.toString('utf8'));
        for (let i = lines.length - 1; i >= 0 && out.length < n; i--) {
          const name = STREAM_NAMES[codes[i]!]!;
          if (stream === undefined || name === stream) {
            out.push({ seq: row.first_seq + i, stream: name, time: new Date(times[i]!).toISOString(), line: lines[i]! });
          }
        }
        before = row.first_seq;
        if (out.length >= n) break;
      }
      if (rows.length === 0) break;
    }
    return out.reverse();
  }

  async deleteJob(jobId: string): Promise<void> {
    await transaction(this.pool, async (c) => {
      await c.query({ name: 'gantry_log_delete_chunks', text: `DELETE FROM log_chunks WHERE job_id = $1`, values: [jobId] });
      await c.query({ name: 'gantry_log_delete_state', text: `DELETE FROM log_state WHERE job_id = $1`, values: [jobId] });
    });
  }

  async totals(): Promise<{ bytes: number; stdoutRecords: number; stderrRecords: number; truncatedJobs: number }> {
    const [row] = await read<{ bytes: number; stdoutRecords: number; stderrRecords: number; truncatedJobs: number }>(this.pool, {
      name: 'gantry_log_totals',
      text: TOTALS,
    });
    return row ?? { bytes: 0, stdoutRecords: 0, stderrRecords: 0, truncatedJobs: 0 };
  }
}
