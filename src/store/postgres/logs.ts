import type pg from 'pg';
import { FencedError } from '../../model/errors.js';
import { EMPTY_LOG_STATE, type LogChunk, type LogLine, type LogState, type LogStream, type NewLogRecord } from '../../model/log.js';
import { encodeChunk, STREAM_NAMES, unpackChunk } from '../chunk-codec.js';
import type { Fence, LogStore } from '../store.js';
import { CHANNEL, read, transaction, write } from './db.js';
import { pgText, TERMINAL_SQL } from './jobs.js';

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

// The fence: the job is still the node's, for that attempt, and not ended.
// FOR SHARE holds its row until the write commits, so an `expire` settling
// the job (it locks the row FOR UPDATE) comes wholly before or after it.
const FENCE = `SELECT 1 FROM jobs WHERE id = $1 AND node = $2 AND attempt = $3 AND state NOT IN ${TERMINAL_SQL} FOR SHARE`;
const INSERT_CHUNK = `INSERT INTO log_chunks (job_id, first_seq, last_seq, lines) VALUES ($1, $2, $3, $4)`;
// The capture's state, and the announcement of the last record stored (sent on commit).
const UPSERT_STATE = `
  WITH s AS (
    INSERT INTO log_state (job_id, next_seq, stdout_records, stderr_records, bytes, truncated, last_stdout, error, complete)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (job_id) DO UPDATE SET next_seq = excluded.next_seq, stdout_records = excluded.stdout_records,
      stderr_records = excluded.stderr_records, bytes = excluded.bytes, truncated = excluded.truncated,
      last_stdout = excluded.last_stdout, error = excluded.error, complete = excluded.complete
    RETURNING job_id, next_seq
  )
  SELECT pg_notify('${CHANNEL}', json_build_object('o', $10::text, 'k', 'log', 'j', s.job_id, 'q', s.next_seq - 1)::text) FROM s`;
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
    /** This node's name, the origin of the changes it announces. */
    private readonly origin: string,
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
    await transaction(this.pool, async (c) => {
      if (fence) await this.fenced(c, jobId, fence);
      await c.query({
        name: 'gantry_log_insert_chunk',
        text: INSERT_CHUNK,
        values: [jobId, next.nextSeq - records.length, next.nextSeq - 1, chunk],
      });
      await c.query(this.upsert(jobId, next));
    });
  }

  async saveState(jobId: string, state: LogState, fence?: Fence): Promise<void> {
    if (!fence) {
      await write(this.pool, this.upsert(jobId, state));
      return;
    }
    await transaction(this.pool, async (c) => {
      await this.fenced(c, jobId, fence);
      await c.query(this.upsert(jobId, state));
    });
  }

  /** Locks the job's row if the fence holds; else FencedError (the transaction then writes nothing). */
  private async fenced(c: pg.PoolClient, jobId: string, fence: Fence): Promise<void> {
    const { rowCount } = await c.query({ name: 'gantry_log_fence', text: FENCE, values: [jobId, fence.node, fence.attempt] });
    if (rowCount === 0) throw new FencedError(jobId, `its logs can no longer be written by node ${fence.node} (attempt ${fence.attempt})`);
  }

  private upsert(jobId: string, s: LogState): pg.QueryConfig {
    return {
      name: 'gantry_log_upsert_state',
      text: UPSERT_STATE,
      values: [
        jobId,
        s.nextSeq,
        s.stdoutRecords,
        s.stderrRecords,
        s.bytes,
        s.truncated,
        pgText(s.lastStdout),
        pgText(s.error),
        s.complete,
        this.origin,
      ],
    };
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
