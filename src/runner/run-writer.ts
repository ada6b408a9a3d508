import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { settleAttempt } from '../jobs/retry-policy.js';
import type { JobService } from '../jobs/service.js';
import { type CaptureOptions, LogCapture } from '../logs/capture.js';
import type { AttemptOutcome, RetryCause } from '../model/attempt.js';
import type { JsonValue } from '../model/job.js';
import { isTerminal, type JobState } from '../model/states.js';
import type { Fence, JobRecord, LogStore } from '../store/store.js';
import { recordEnd } from './end-recorder.js';
import { untilStored } from './until-stored.js';

export interface RunWriterDeps {
  config: Config;
  jobs: JobService;
  logs: LogStore;
  log: Logger;
  onAppend: (jobId: string, lastSeq: number) => void;
  stopped: () => boolean;
}

/** How an attempt ended, as the run knows it. */
export interface AttemptEnd {
  state: AttemptOutcome;
  reason: string | null;
  cause?: RetryCause | null;
  exitCode?: number | null;
  /** The job's result; read from the stored log when not given. */
  result?: string | null;
  /** The JSON document the attempt wrote to its result file, redacted; none when not given. */
  resultDocument?: JsonValue | null;
}

/**
 * How settling an attempt went: the job ended, or went back to the queue as
 * its next attempt; it had ended already by another hand; or Gantry
 * stopped before the end could be recorded.
 */
export type Settled = 'ended' | 'requeued' | 'already_ended' | 'unrecorded';

/**
 * What one run writes about its job, each write with the run's fence: its
 * steps, its output (a log capture), going back to the queue, and how its
 * attempt ended. Writes wait out a store that cannot take them (untilStored).
 */
export class RunWriter {
  constructor(
    private readonly d: RunWriterDeps,
    private readonly record: JobRecord,
    private readonly fence: Fence,
  ) {}

  stored<T>(fn: () => Promise<T>): Promise<T> {
    return untilStored(fn, { stopped: this.d.stopped, log: this.d.log, jobId: this.record.id });
  }

  /** A state change on the way; false when the job was ended meanwhile by another hand (a cancel). */
  async step(to: JobState, patch: Parameters<JobService['transition']>[2]): Promise<boolean> {
    return (await this.stored(() => this.d.jobs.transition(this.record.id, to, patch, this.fence))) !== undefined;
  }

  /** Back in the queue with no node, as the same attempt: any node may take it again (JobService.requeue). */
  async requeue(): Promise<void> {
    await this.stored(() => this.d.jobs.requeue(this.record.id, this.fence));
  }

  /** Opens a capture of the container's output into the job's log. */
  openCapture(extra: Pick<CaptureOptions, 'onFenced' | 'redact'>, o: Parameters<typeof LogCapture.open>[1] = {}): Promise<LogCapture> {
    const id = this.record.id;
    const { logs } = this.d.config;
    return this.stored(() =>
      LogCapture.open(
        {
          jobId: id,
          store: this.d.logs,
          maxBytes: logs.maxBytesPerJob,
          driver: logs.driver,
          log: this.d.log,
          onAppend: (seq) => this.d.onAppend(id, seq),
          fence: this.fence,
          stopped: this.d.stopped,
          ...extra,
        },
        o,
      ),
    );
  }

  /**
   * Records how the attempt ended. The spec's retry rules decide
   * (retry-policy.ts) whether that is the job's end or the job goes back to
   * the queue as its next attempt, which any node may take.
   */
  async settle(end: AttemptEnd, cancelRequested: boolean): Promise<Settled> {
    const id = this.record.id;
    const current = await this.stored(() => this.d.jobs.current(id)).catch(() => null);
    if (current && isTerminal(current.state)) return 'already_ended';
    const { patch, retried } = settleAttempt(
      { ...this.record, cancelRequested: cancelRequested || (current?.cancelRequested ?? false) },
      { outcome: end.state, cause: end.cause ?? null, reason: end.reason, exitCode: end.exitCode ?? null },
      new Date(),
    );
    const rec = { jobs: this.d.jobs, log: this.d.log, stopped: this.d.stopped, fence: this.fence };
    if (retried) return (await recordEnd(rec, id, 'queued', patch)) ? 'requeued' : 'unrecorded';
    const result = end.result !== undefined ? end.result : ((await this.d.logs.state(id).catch(() => null))?.lastStdout ?? null);
    const recorded = await recordEnd(rec, id, end.state, {
      ...patch,
      result,
      resultDocument: end.resultDocument ?? null,
      pullStatus: null,
      pullProgress: null,
    });
    return recorded ? 'ended' : 'unrecorded';
  }
}
