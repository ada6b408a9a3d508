import type { LogChunk, LogLine, LogStream, NewLogRecord } from '../model/log.js';

/**
 * Stored form of a chunk. Version 1 (older rows): a JSON array of
 * [stream code, epoch ms, text] per record. Version 2 (written now): a JSON
 * array of runs [stream code, epoch ms, record count] — consecutive records
 * of one stream received in the same millisecond — then a newline, then the
 * records' texts joined by newlines (a record never contains one: the line
 * splitter cuts there). Version 2 costs no escaping per line on write and a
 * split instead of a JSON parse on read, and is a third smaller for short
 * lines (docs/performance.md). A v1 row never contains a raw newline.
 */
type Packed = [0 | 1 | 2, number, string];
type Run = [0 | 1 | 2, number, number];
const CODE: Record<LogStream, 0 | 1 | 2> = { stdout: 0, stderr: 1, system: 2 };
export const STREAM_NAMES: LogStream[] = ['stdout', 'stderr', 'system'];

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

/**
 * An append found its chunk's first seq already stored with other records:
 * two writers of one log. (The same records there are the same append
 * repeated after its reply was lost, which the stores take as done.)
 */
export class ChunkConflictError extends Error {
  constructor(jobId: string, firstSeq: number, lastSeq: number) {
    super(`log records ${firstSeq}..${lastSeq} of job ${jobId} are already stored with other content`);
    this.name = 'ChunkConflictError';
  }
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
    if (stream !== undefined && STREAM_NAMES[code] !== stream) continue;
    const time = times[i]!;
    if (time !== lastTime) {
      lastTime = time;
      lastIso = new Date(time).toISOString();
    }
    out.push({ seq: chunk.firstSeq + i, stream: STREAM_NAMES[code]!, time: lastIso, line: lines[i]! });
  }
  return out;
}
