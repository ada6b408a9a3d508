import type { JobSpec } from '../model/job.js';
import type { LogChunk, LogLine, LogState, LogStream, NewLogRecord } from '../model/log.js';
import type { JobState } from '../model/states.js';

/**
 * Gantry's persistent state behind one asynchronous interface, so that the
 * embedded SQLite store and a shared database implement the same contract
 * and nothing above this file knows which one it talks to.
 *
 * Rules every implementation keeps:
 * - A write that cannot be made (disk full, database unreachable) rejects
 *   with StoreUnavailableError and changes nothing.
 * - `jobs.insert` is atomic with its idempotency check: two inserts with the
 *   same owner and key yield one job, whatever their timing.
 * - `jobs.update` with `expect` is a compare-and-set: it changes the job only
 *   if its state is still the expected one, else resolves undefined.
 * - Records handed out are frozen and never change; a write yields a new one.
 */
export interface Store {
  readonly jobs: JobStore;
  readonly logs: LogStore;
  readonly settings: SettingsStore;
  /** Rejects when a write cannot be made now (for readiness). */
  probeWritable(): Promise<void>;
  close(): Promise<void>;
}

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
  /** Declared memory per card when sharing GPUs; null for exclusive use. */
  readonly gpuMemoryMiB: number | null;
  readonly exitCode: number | null;
  readonly reason: string | null;
  readonly result: string | null;
  readonly pullStatus: string | null;
  readonly pullProgress: string | null;
  readonly cancelRequested: boolean;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly deadlineAt: string | null;
}

export interface NewJob {
  id: string;
  owner: string;
  spec: JobSpec;
  specHash: string;
  idempotencyKey: string | null;
  requestId: string | null;
  createdAt: string;
}

/** The fields a job's owner cannot change, and everything else that can. */
export type JobPatch = Partial<
  Pick<
    JobRecord,
    | 'state'
    | 'containerId'
    | 'gpus'
    | 'gpuMemoryMiB'
    | 'exitCode'
    | 'reason'
    | 'result'
    | 'pullStatus'
    | 'pullProgress'
    | 'cancelRequested'
    | 'startedAt'
    | 'finishedAt'
    | 'deadlineAt'
  >
>;

export interface ListFilter {
  owner?: string | undefined;
  states?: readonly JobState[] | undefined;
  label?: { key: string; value: string } | undefined;
  /** The `seq` cursor of the previous page: only older jobs. */
  beforeSeq?: number | undefined;
  limit: number;
}

export interface JobStore {
  /**
   * Inserts a queued job, unless the owner already used its idempotency key:
   * then the job made with that key is returned, `created` false.
   */
  insert(job: NewJob): Promise<{ record: JobRecord; created: boolean }>;
  get(id: string): Promise<JobRecord | undefined>;
  /** Changes a job; with `expect`, only while its state is still that one (else undefined). */
  update(id: string, patch: JobPatch, expect?: { state: JobState }): Promise<JobRecord | undefined>;
  /** Queued jobs in scheduling order: higher priority first, then FIFO. */
  queued(): Promise<JobRecord[]>;
  /** Each queued job's place in the queue (0 is next). */
  queuePositions(): Promise<ReadonlyMap<string, number>>;
  /** Jobs that hold, or are about to hold, a container. */
  active(): Promise<JobRecord[]>;
  /** Newest first. */
  list(filter: ListFilter): Promise<JobRecord[]>;
  /** Ids of jobs that finished before the cutoff (ISO time), for log retention. */
  finishedBefore(cutoffIso: string): Promise<string[]>;
  /** Job counts by state and owner. */
  countByStateAndOwner(): Promise<{ state: JobState; owner: string; count: number }[]>;
  /** How many jobs are queued, and when the oldest of them was submitted. */
  queueSummary(): Promise<{ length: number; oldestCreatedAt: string | null }>;
}

export interface LogStore {
  state(jobId: string): Promise<LogState>;
  /** Stores records (numbered up to `next.nextSeq - 1`) and the capture's new state, together. */
  append(jobId: string, records: readonly NewLogRecord[], next: LogState): Promise<void>;
  saveState(jobId: string, state: LogState): Promise<void>;
  /**
   * The stored chunks holding records with seq > afterSeq, oldest first: at
   * most `limit.chunks` of them, and no more once `limit.lines` records are in.
   */
  chunks(jobId: string, afterSeq: number, limit: { chunks: number; lines: number }): Promise<LogChunk[]>;
  /** The last n records (of one stream, if given), oldest first. */
  tail(jobId: string, n: number, stream?: LogStream): Promise<LogLine[]>;
  deleteJob(jobId: string): Promise<void>;
  /** Totals over every stored log, for metrics. */
  totals(): Promise<{ bytes: number; stdoutRecords: number; stderrRecords: number; truncatedJobs: number }>;
}

export interface SettingsStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
}
