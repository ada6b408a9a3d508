import type { Statement } from 'better-sqlite3';
import type { Db } from '../store/db.js';
import { z } from 'zod';

export const LOG_STREAMS = ['stdout', 'stderr', 'system'] as const;
export type LogStream = (typeof LOG_STREAMS)[number];

export const LogLineSchema = z
  .object({
    seq: z.number().int().describe('Per-job sequence number, from 1, strictly increasing; the SSE event id.'),
    stream: z.enum(LOG_STREAMS).describe('"system" marks Gantry\'s own notes, e.g. truncation.'),
    time: z.string().describe('When Gantry received the line (ISO 8601).'),
    line: z.string().describe('The line without its newline; lines over 16 KiB arrive as several records.'),
  })
  .meta({ id: 'LogLine' });
export type LogLine = z.infer<typeof LogLineSchema>;

export interface NewLogRecord {
  stream: LogStream;
  time: number;
  line: string;
}

export interface LogState {
  nextSeq: number;
  stdoutRecords: number;
  stderrRecords: number;
  bytes: number;
  truncated: boolean;
  lastStdout: string | null;
  error: string | null;
  complete: boolean;
}

/** Stored form of one record inside a chunk: [stream code, epoch ms, text]. */
type Packed = [0 | 1 | 2, number, string];
const CODE: Record<LogStream, 0 | 1 | 2> = { stdout: 0, stderr: 1, system: 2 };
const NAME: LogStream[] = ['stdout', 'stderr', 'system'];

export const RESULT_MAX = 4096;

/**
 * Append-only log storage in SQLite. Lines are stored in chunks (one row per
 * flush) because a row per line costs several times the CPU on a 200 MB log;
 * a chunk's first and last sequence numbers keep range reads indexed.
 */
export class LogStore {
  private readonly insertChunk: Statement;
  private readonly upsertState: Statement;
  private readonly getState: Statement;
  private readonly chunksAfter: Statement;
  private readonly chunksDesc: Statement;

  constructor(private readonly db: Db) {
    this.insertChunk = db.prepare(`INSERT INTO log_chunks (job_id, first_seq, last_seq, lines) VALUES (?, ?, ?, ?)`);
    this.upsertState = db.prepare(
      `INSERT INTO log_state (job_id, next_seq, stdout_records, stderr_records, bytes, truncated, last_stdout, error, complete)
       VALUES (@jobId, @nextSeq, @stdoutRecords, @stderrRecords, @bytes, @truncated, @lastStdout, @error, @complete)
       ON CONFLICT(job_id) DO UPDATE SET next_seq = excluded.next_seq, stdout_records = excluded.stdout_records,
         stderr_records = excluded.stderr_records, bytes = excluded.bytes, truncated = excluded.truncated,
         last_stdout = excluded.last_stdout, error = excluded.error, complete = excluded.complete`,
    );
    this.getState = db.prepare(`SELECT * FROM log_state WHERE job_id = ?`);
    this.chunksAfter = db.prepare(
      `SELECT first_seq, lines FROM log_chunks WHERE job_id = ? AND last_seq > ? ORDER BY first_seq LIMIT ?`,
    );
    this.chunksDesc = db.prepare(
      `SELECT first_seq, lines FROM log_chunks WHERE job_id = ? AND first_seq < ? ORDER BY first_seq DESC LIMIT 16`,
    );
  }

  state(jobId: string): LogState {
    const r = this.getState.get(jobId) as
      | {
          next_seq: number;
          stdout_records: number;
          stderr_records: number;
          bytes: number;
          truncated: number;
          last_stdout: string | null;
          error: string | null;
          complete: number;
        }
      | undefined;
    if (!r) {
      return { nextSeq: 1, stdoutRecords: 0, stderrRecords: 0, bytes: 0, truncated: false, lastStdout: null, error: null, complete: false };
    }
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

  /** Stores records and the capture's new state in one transaction. */
  append(jobId: string, records: readonly NewLogRecord[], next: LogState): void {
    this.db.transaction(() => {
      if (records.length > 0) {
        const first = next.nextSeq - records.length;
        const packed: Packed[] = records.map((r) => [CODE[r.stream], r.time, r.line]);
        this.insertChunk.run(jobId, first, next.nextSeq - 1, JSON.stringify(packed));
      }
      this.saveState(jobId, next);
    })();
  }

  saveState(jobId: string, s: LogState): void {
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

  /**
   * Records with seq > afterSeq, oldest first, at most `limit` of them.
   * `cursor` is the last seq examined (matching or not): pass it back as
   * afterSeq to continue, so a stream filter never rescans.
   */
  read(jobId: string, afterSeq: number, limit: number, stream?: LogStream): { lines: LogLine[]; cursor: number } {
    const lines: LogLine[] = [];
    let cursor = afterSeq;
    for (;;) {
      const rows = this.chunksAfter.all(jobId, cursor, 8) as { first_seq: number; lines: string }[];
      if (rows.length === 0) return { lines, cursor };
      for (const row of rows) {
        const packed = JSON.parse(row.lines) as Packed[];
        for (let i = Math.max(0, cursor + 1 - row.first_seq); i < packed.length; i++) {
          const [code, time, line] = packed[i]!;
          cursor = row.first_seq + i;
          if (stream === undefined || NAME[code] === stream) {
            lines.push({ seq: cursor, stream: NAME[code]!, time: new Date(time).toISOString(), line });
            if (lines.length >= limit) return { lines, cursor };
          }
        }
      }
    }
  }

  /** The last n records (of one stream, if given), oldest first. */
  tail(jobId: string, n: number, stream?: LogStream): LogLine[] {
    const out: LogLine[] = [];
    let before = Number.MAX_SAFE_INTEGER;
    while (out.length < n) {
      const rows = this.chunksDesc.all(jobId, before) as { first_seq: number; lines: string }[];
      if (rows.length === 0) break;
      for (const row of rows) {
        const packed = JSON.parse(row.lines) as Packed[];
        for (let i = packed.length - 1; i >= 0 && out.length < n; i--) {
          const [code, time, line] = packed[i]!;
          if (stream === undefined || NAME[code] === stream) {
            out.push({ seq: row.first_seq + i, stream: NAME[code]!, time: new Date(time).toISOString(), line });
          }
        }
        before = row.first_seq;
        if (out.length >= n) break;
      }
    }
    return out.reverse();
  }

  deleteJob(jobId: string): void {
    this.db.transaction(() => {
      this.db.prepare(`DELETE FROM log_chunks WHERE job_id = ?`).run(jobId);
      this.db.prepare(`DELETE FROM log_state WHERE job_id = ?`).run(jobId);
    })();
  }
}
