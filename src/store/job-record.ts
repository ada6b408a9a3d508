import type { AttemptRecord } from '../model/attempt.js';
import type { GpuTelemetry } from '../model/gpu-telemetry.js';
import type { JobSpec, JsonValue } from '../model/job.js';
import type { RunSettings } from '../model/run-settings.js';
import type { JobState } from '../model/states.js';

/** A job as stored. */
export interface JobRecord {
  /** Insertion order, for FIFO and list cursors. */
  readonly seq: number;
  readonly id: string;
  readonly owner: string;
  readonly name: string | null;
  readonly state: JobState;
  readonly priority: number;
  readonly spec: JobSpec;
  readonly specHash: string;
  readonly idempotencyKey: string | null;
  readonly requestId: string | null;
  readonly containerId: string | null;
  readonly gpus: readonly string[];
  /** The node that took the job (null while no node has). */
  readonly node: string | null;
  /** 1, plus one for each time the job was queued again as a new attempt. */
  readonly attempt: number;
  /**
   * The epoch of the node's process that holds the job's run: set by its
   * claim, re-stamped when a newer process of the node adopts the run; 0
   * before any claim (and for jobs claimed before epochs were stored).
   */
  readonly nodeEpoch: number;
  /** The attempts that ended, oldest first. */
  readonly attempts: readonly AttemptRecord[];
  /** The earliest time the current attempt may start (a retry's backoff); null for none. */
  readonly notBefore: string | null;
  /** Declared memory per card when sharing GPUs; null for exclusive use. */
  readonly gpuMemoryMiB: number | null;
  /** What the GPU sampler measured of the attempt that ran last; null when it measured nothing. */
  readonly gpuTelemetry: GpuTelemetry | null;
  readonly exitCode: number | null;
  readonly reason: string | null;
  readonly result: string | null;
  /** The JSON document the last attempt wrote to its result file; null for none (the view then shows `result`). */
  readonly resultDocument: JsonValue | null;
  readonly pullStatus: string | null;
  readonly pullProgress: string | null;
  readonly cancelRequested: boolean;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly deadlineAt: string | null;
  /** How the job runs, resolved at submit (jobs/run-settings.ts); null only for a job ended before settings were stored. */
  readonly settings: RunSettings | null;
}

export interface NewJob {
  id: string;
  owner: string;
  spec: JobSpec;
  specHash: string;
  idempotencyKey: string | null;
  requestId: string | null;
  createdAt: string;
  settings: RunSettings;
}

/** Freezes a record as every store hands it out: the record, its lists and settings (the spec is never written to). */
export function frozenRecord(r: JobRecord): JobRecord {
  Object.freeze(r.gpus);
  Object.freeze(r.attempts);
  if (r.settings) Object.freeze(r.settings);
  return Object.freeze(r);
}

/** The record of a job just inserted, as a store gives it back: queued, no node, attempt 1, nothing run yet. */
export function newJobRecord(job: NewJob, seq: number): JobRecord {
  return frozenRecord({
    seq,
    id: job.id,
    owner: job.owner,
    name: job.spec.name ?? null,
    state: 'queued',
    priority: job.spec.priority ?? 0,
    spec: job.spec,
    specHash: job.specHash,
    idempotencyKey: job.idempotencyKey,
    requestId: job.requestId,
    containerId: null,
    gpus: [],
    node: null,
    attempt: 1,
    nodeEpoch: 0,
    attempts: [],
    notBefore: null,
    gpuMemoryMiB: null,
    gpuTelemetry: null,
    exitCode: null,
    reason: null,
    result: null,
    resultDocument: null,
    pullStatus: null,
    pullProgress: null,
    cancelRequested: false,
    createdAt: job.createdAt,
    startedAt: null,
    finishedAt: null,
    deadlineAt: null,
    settings: { ...job.settings },
  });
}

/**
 * The settings of a job that may still run. Every such job has them: a
 * submit stores them, and the app fills those of jobs stored before
 * settings were when it starts (JobStore.fillSettings); only a job that had
 * already ended may lack them.
 */
export function runSettings(record: JobRecord): RunSettings {
  if (record.settings === null) throw new Error(`job ${record.id} has no run settings (it ended before they were stored)`);
  return record.settings;
}
