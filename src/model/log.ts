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

/** A line as captured, before the store numbers it. */
export interface NewLogRecord {
  stream: LogStream;
  time: number;
  line: string;
}

/** One stored chunk (one capture flush): records firstSeq..lastSeq, in the stored form of store/chunk-codec.ts. */
export interface LogChunk {
  firstSeq: number;
  lastSeq: number;
  lines: string;
}

/** What a capture has stored of a job's output so far; a restarted capture resumes from it. */
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

export const EMPTY_LOG_STATE: Readonly<LogState> = Object.freeze({
  nextSeq: 1,
  stdoutRecords: 0,
  stderrRecords: 0,
  bytes: 0,
  truncated: false,
  lastStdout: null,
  error: null,
  complete: false,
});

/** The longest `result` (last non-empty stdout line) kept for a job. */
export const RESULT_MAX = 4096;
