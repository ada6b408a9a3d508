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

/** One stored chunk (one capture flush): records firstSeq..lastSeq, packed as JSON. */
export interface LogChunk {
  firstSeq: number;
  lastSeq: number;
  lines: string;
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

/**
 * Stored form of a chunk. Version 1 (older rows): a JSON array of
 * [stream code, epoch ms, text] per record. Version 2 (written now): a JSON
 * array of runs [stream code, epoch ms, record count] — consecutive records
 * of one stream received in the same millisecond — then a newline, then the
 * records' texts joined by newlines (a record never contains one: the line
 * splitter cuts there). Version 2 costs no escaping per line on write and a
 * split instead of a JSON parse on read, and is a third smaller for short
 * lines (bench: docs/performance.md). A v1 row never contains a raw newline.
 */
type Packed = [0 | 1 | 2, number, string];
type Run = [0 | 1 | 2, number, number];
const CODE: Record<LogStream, 0 | 1 | 2> = { stdout: 0, stderr: 1, system: 2 };
const NAME: LogStream[] = ['stdout', 'stderr', 'system'];

export function encodeChunk(records: readonly NewLogRecord[]): string {
  const runs: Run[] = [];
  const texts = new Array<string>(records.length);
  let run: Run | null = null;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    texts[i] = r.line;
    const code = CODE[r.stream];
    if (run !== null && run[0] === code && run[1] === r.time) run[2]++;
    else runs.push((run = [code, r.time, 1]));
  }
  return `${JSON.stringify(runs)}\n${texts.join('\n')}`;
}

/** A chunk's records as parallel arrays, from either version. */
export function unpackChunk(text: string): { codes: (0 | 1 | 2)[]; times: number[]; lines: string[] } {
  const nl = text.indexOf('\n');
  if (nl === -1) {
    const packed = JSON.parse(text) as Packed[];
    return { codes: packed.map((p) => p[0]), times: packed.map((p) => p[1]), lines: packed.map((p) => p[2]) };
  }
  const runs = JSON.parse(text.slice(0, nl)) as Run[];
  const lines = text.slice(nl + 1).split('\n');
  const codes = new Array<0 | 1 | 2>(lines.length);
  const times = new Array<number>(lines.length);
  let i = 0;
  for (const [code, time, count] of runs) {
    for (let k = 0; k < count; k++, i++) {
      codes[i] = code;
      times[i] = time;
    }
  }
  if (i !== lines.length) throw new Error(`corrupt log chunk: ${i} records in its runs, ${lines.length} lines`);
  return { codes, times, lines };
}

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
        this.insertChunk.run(jobId, first, next.nextSeq - 1, encodeChunk(records));
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
      const [chunk] = [...this.chunks(jobId, cursor, 1)];
      if (!chunk) return { lines, cursor };
      for (const l of decodeChunk(chunk, cursor, stream)) {
        lines.push(l);
        if (lines.length >= limit) return { lines, cursor: l.seq };
      }
      cursor = chunk.lastSeq;
    }
  }

  /**
   * The stored chunks holding records with seq > afterSeq, oldest first, at
   * most `max` of them. Chunks never change once written, so followers
   * decode (and format) them whole and share the result (src/logs/follow.ts).
   */
  chunks(jobId: string, afterSeq: number, max: number): IterableIterator<LogChunk> {
    // Lazily: a reader that stops early never loads the rows it skips.
    return this.chunksAfter.iterate({ jobId, afterSeq, max }) as IterableIterator<LogChunk>;
  }

  /** The last n records (of one stream, if given), oldest first. */
  tail(jobId: string, n: number, stream?: LogStream): LogLine[] {
    const out: LogLine[] = [];
    let before = Number.MAX_SAFE_INTEGER;
    while (out.length < n) {
      let any = false;
      // Lazily: only the chunks needed are read.
      for (const row of this.chunksDesc.iterate(jobId, before) as IterableIterator<{ first_seq: number; lines: string }>) {
        any = true;
        const { codes, times, lines } = unpackChunk(row.lines);
        for (let i = lines.length - 1; i >= 0 && out.length < n; i--) {
          const code = codes[i]!;
          if (stream === undefined || NAME[code] === stream) {
            out.push({ seq: row.first_seq + i, stream: NAME[code]!, time: new Date(times[i]!).toISOString(), line: lines[i]! });
          }
        }
        before = row.first_seq;
        if (out.length >= n) break;
      }
      if (!any) break;
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

/**
 * The records of a chunk with seq > afterSeq (of one stream, if given).
 * Consecutive records mostly share a millisecond, so its ISO text is reused.
 */
export function decodeChunk(chunk: LogChunk, afterSeq: number, stream?: LogStream): LogLine[] {
  const { codes, times, lines } = unpackChunk(chunk.lines);
  const out: LogLine[] = [];
  let lastTime = Number.NaN;
  let lastIso = '';
  for (let i = Math.max(0, afterSeq + 1 - chunk.firstSeq); i < lines.length; i++) {
    const code = codes[i]!;
    if (stream !== undefined && NAME[code] !== stream) continue;
    const time = times[i]!;
    if (time !== lastTime) {
      lastTime = time;
      lastIso = new Date(time).toISOString();
    }
    out.push({ seq: chunk.firstSeq + i, stream: NAME[code]!, time: lastIso, line: lines[i]! });
  }
  return out;
}
