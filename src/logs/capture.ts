import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from 'pino';
import { FencedError, StoreUnavailableError } from '../model/errors.js';
import { type LogState, type NewLogRecord, RESULT_MAX } from '../model/log.js';
import type { Fence, LogStore } from '../store/store.js';
import { DockerDemuxer, type StdStream } from './demux.js';
import { LineSplitter } from './line-splitter.js';
import type { TextFilter } from './secret-redactor.js';

const FLUSH_RECORDS = 2000;
const FLUSH_BYTES = 256 * 1024;
const FLUSH_MS = 25;
/** Pause between tries of a write the store could not take because it was unreachable. */
const UNREACHABLE_RETRY_MS = 1000;

const MiB = 1024 * 1024;
/**
 * Bytes a record takes in Docker's log file beyond its text, rounded up
 * from dockerd 20.10 (measured: docs/performance.md): `local` (protobuf) ≈ 27,
 * `json-file` ≈ 70 (json-file also escapes <, >, &, quotes and control
 * characters, up to 6 bytes each, which no per-record figure covers).
 */
export const DRIVER_RECORD_OVERHEAD = { local: 32, 'json-file': 80 } as const;
export type LogDriver = keyof typeof DRIVER_RECORD_OVERHEAD;

/**
 * The `max-size` of the job's single log-driver file, in MiB: room for a
 * log at the cap in lines of 10+ bytes (local) or 24+ bytes (json-file).
 * With `max-file` 1 the driver starts its file afresh past this size, and a
 * restarted Gantry resumes capture from that file, so capture stops storing
 * before the driver could get there (see record()).
 */
export function driverLogMaxMiB(maxBytes: number): number {
  return Math.ceil((4 * maxBytes) / MiB) + 16;
}

export interface CaptureOptions {
  jobId: string;
  store: LogStore;
  maxBytes: number;
  /** The job's log driver (its file is what a restarted Gantry resumes from). */
  driver: LogDriver;
  log: Logger;
  /** Told the highest stored seq after each flush (live followers wake up). */
  onAppend: (lastSeq: number) => void;
  /** The run the lines belong to: the store refuses them once the job is no longer that run's. */
  fence?: Fence;
  /** The store refused a write because the job is no longer this run's; nothing more is stored. */
  onFenced?: (err: FencedError) => void;
  /** Whether Gantry is shutting down: writes the store cannot take are then no longer retried. */
  stopped?: () => boolean;
  /**
   * Made once per stream and given the stream's text before it is cut into
   * lines, so nothing it takes out is split by a cut (the run's secrets).
   */
  redact?: () => TextFilter;
}

/**
 * Captures one job's output into the log store: demultiplex, split into
 * lines, number, and append in batches. A capture resumed after a restart
 * reads the container's whole log again and skips, per stream, exactly the
 * records already stored, so no line is lost or duplicated.
 *
 * Writes to the store are made one after another, in order, each with the
 * state as it was when its records were cut (the store may be remote).
 */
export class LogCapture {
  private readonly state: LogState;
  private readonly skip: Record<StdStream, number>;
  private buffer: NewLogRecord[] = [];
  private bufferBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly splitters: Record<StdStream, LineSplitter>;
  private readonly filters: Record<StdStream, { decoder: StringDecoder; filter: TextFilter }> | null;
  /** What the driver's file may hold before it could start afresh, with a margin. */
  private readonly driverBudget: number;
  private readonly recordOverhead: number;

  /**
   * Set once the store refused a write as fenced, or Gantry stopped while
   * the store was unreachable: nothing more is written (in the second case
   * the next start's capture resumes from the engine's log file).
   */
  private halted = false;
  /** The store writes in flight, chained in order. */
  private writes: Promise<void> = Promise.resolve();

  /**
   * A capture that resumes where the store's log of the job ends. For a
   * container that has never run (`newContainer`), nothing of its output is
   * stored yet: none is skipped, and its lines follow those of the job's
   * earlier attempts, after the banner if one is given. Each container (each
   * attempt) has a cap and a result of its own: an attempt that prints
   * nothing on stdout has no result, whatever an earlier one printed, and
   * one whose predecessor filled the cap is still logged.
   */
  static async open(opts: CaptureOptions, o: { newContainer?: boolean; banner?: string } = {}): Promise<LogCapture> {
    const stored = await opts.store.state(opts.jobId);
    const state = o.newContainer
      ? { ...stored, stdoutRecords: 0, stderrRecords: 0, bytes: 0, truncated: false, lastStdout: null, complete: false, error: null }
      : stored;
    const capture = new LogCapture(opts, state);
    if (o.banner !== undefined && !state.truncated) capture.push({ stream: 'system', time: Date.now(), line: o.banner });
    return capture;
  }

  private constructor(
    private readonly opts: CaptureOptions,
    stored: LogState,
  ) {
    this.driverBudget = (driverLogMaxMiB(opts.maxBytes) - 8) * MiB;
    this.recordOverhead = DRIVER_RECORD_OVERHEAD[opts.driver];
    this.state = { ...stored };
    this.skip = { stdout: this.state.stdoutRecords, stderr: this.state.stderrRecords };
    this.splitters = {
      stdout: new LineSplitter((l) => this.record('stdout', l)),
      stderr: new LineSplitter((l) => this.record('stderr', l)),
    };
    const redact = opts.redact;
    this.filters = redact
      ? {
          stdout: { decoder: new StringDecoder('utf8'), filter: redact() },
          stderr: { decoder: new StringDecoder('utf8'), filter: redact() },
        }
      : null;
  }

  /** A stream's bytes, through its filter if there is one, to its line splitter. */
  private take(stream: StdStream, bytes: Buffer): void {
    const f = this.filters?.[stream];
    if (f) this.splitters[stream].push(Buffer.from(f.filter.push(f.decoder.write(bytes)), 'utf8'));
    else this.splitters[stream].push(bytes);
  }

  private endStream(stream: StdStream): void {
    const f = this.filters?.[stream];
    if (f) this.splitters[stream].push(Buffer.from(f.filter.push(f.decoder.end()) + f.filter.end(), 'utf8'));
    this.splitters[stream].end();
  }

  /** Consumes a multiplexed Docker stream to its end; never rejects. */
  async consume(source: Readable): Promise<void> {
    const demux = new DockerDemuxer((stream, payload) => this.take(stream, payload));
    try {
      await pipeline(source, demux);
    } catch (err) {
      // Docker's hijacked attach socket closes without an 'end' once the
      // container exits; everything sent before that was already consumed.
      const premature = (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE';
      this.opts.log[premature ? 'debug' : 'warn']({ err, jobId: this.opts.jobId }, 'log stream ended with an error');
    }
    this.endStream('stdout');
    this.endStream('stderr');
  }

  /**
   * Adds a line of Gantry's own (stream `system`, `[gantry] …`) among the
   * container's. It counts for neither stream, so a resumed capture skips
   * the same container records as before; a log that is truncated, failed
   * or complete takes no more.
   */
  note(line: string): void {
    if (this.state.truncated || this.state.error || this.state.complete || this.halted) return;
    this.push({ stream: 'system', time: Date.now(), line });
  }

  /** Writes what is buffered and marks the log complete. */
  async finish(): Promise<LogState> {
    this.flush();
    this.state.complete = true;
    this.persist([]);
    await this.writes;
    return { ...this.state };
  }

  /** Writes what is buffered, leaving the log open for a capture that resumes it. */
  async detach(): Promise<void> {
    this.flush();
    await this.writes;
  }

  private record(stream: StdStream, line: string): void {
    if (this.skip[stream] > 0) {
      this.skip[stream]--;
      return;
    }
    if (stream === 'stdout') this.state.stdoutRecords++;
    else this.state.stderrRecords++;
    // The result follows stdout to its end, past the cap too.
    if (stream === 'stdout' && line.trim().length > 0) {
      this.state.lastStdout = line.length > RESULT_MAX ? line.slice(0, RESULT_MAX) : line;
    }
    if (this.state.truncated || this.state.error) return;
    const size = Buffer.byteLength(line) + 1;
    const records = this.state.stdoutRecords + this.state.stderrRecords;
    const overCap = this.state.bytes + size > this.opts.maxBytes;
    // Many tiny lines fill the driver's file long before the cap: stop there
    // too, so every stored line is still in that file for a resume.
    if (overCap || this.state.bytes + size + records * this.recordOverhead > this.driverBudget) {
      this.state.truncated = true;
      this.push({
        stream: 'system',
        time: Date.now(),
        line: overCap
          ? `[gantry] log truncated: the cap of ${this.opts.maxBytes} bytes (GANTRY_LOG_MAX_BYTES) was reached; later output was discarded`
          : `[gantry] log truncated: ${records} lines fill the ${driverLogMaxMiB(this.opts.maxBytes)} MiB log file Docker keeps for this job (4 × GANTRY_LOG_MAX_BYTES); later output was discarded`,
      });
      this.flush();
      return;
    }
    this.state.bytes += size;
    this.push({ stream, time: Date.now(), line });
  }

  private push(r: NewLogRecord): void {
    this.buffer.push(r);
    this.bufferBytes += r.line.length;
    this.state.nextSeq++;
    if (this.buffer.length >= FLUSH_RECORDS || this.bufferBytes >= FLUSH_BYTES) this.flush();
    else if (this.timer === null) this.timer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const records = this.buffer;
    this.buffer = [];
    this.bufferBytes = 0;
    this.persist(records);
  }

  /**
   * A write the store refuses because it cannot be reached (a shared
   * database restarting) is tried again, in order, until it lands: the
   * lines wait in memory meanwhile, and none is lost. A write refused for
   * good (disk full, I/O error) stops storing this job's lines and is
   * recorded where it can be seen; the stream keeps being drained so the
   * container is never blocked on a full pipe, and Gantry keeps running.
   * A fenced write stops storing at once: the job is another run's now.
   */
  private persist(records: NewLogRecord[]): void {
    const snapshot = { ...this.state };
    this.writes = this.writes.then(() => this.write(records, snapshot));
  }

  private async write(records: NewLogRecord[], snapshot: LogState): Promise<void> {
    // After a failed write nothing more is stored (the lines since are lost anyway).
    if ((this.state.error && !snapshot.error) || this.halted) return;
    for (;;) {
      try {
        await this.opts.store.append(this.opts.jobId, records, snapshot, this.opts.fence);
        if (records.length > 0) this.opts.onAppend(snapshot.nextSeq - 1);
        return;
      } catch (err) {
        if (err instanceof FencedError) {
          this.halted = true;
          this.opts.onFenced?.(err);
          return;
        }
        if (err instanceof StoreUnavailableError && err.reason === 'unavailable') {
          if (this.opts.stopped?.()) {
            this.halted = true;
            return;
          }
          this.opts.log.warn({ err, jobId: this.opts.jobId }, 'the log store is unreachable; retrying the write');
          await new Promise((r) => setTimeout(r, UNREACHABLE_RETRY_MS));
          continue;
        }
        await this.giveUp(err as Error, records, snapshot);
        return;
      }
    }
  }

  private async giveUp(err: Error, records: NewLogRecord[], snapshot: LogState): Promise<void> {
    const message = `log storage failed: ${err.message}`;
    this.opts.log.error({ err, jobId: this.opts.jobId }, message);
    this.state.error = message;
    this.state.nextSeq = snapshot.nextSeq - records.length;
    this.buffer = [];
    this.bufferBytes = 0;
    try {
      await this.opts.store.saveState(this.opts.jobId, { ...this.state }, this.opts.fence);
    } catch {
      // The store cannot take even the error note; it stays in memory and in the log.
    }
  }
}
