import type { AttemptEnd } from '../model/attempt.js';
import type { AuditAction, AuditOutcome, AuditRecord, NewAuditRecord } from '../model/audit.js';
import type { JobSpec } from '../model/job.js';
import type { LogChunk, LogLine, LogState, LogStream, NewLogRecord } from '../model/log.js';
import type { NodeGpu, NodeState } from '../model/node.js';
import type { RunSettings } from '../model/run-settings.js';
import type { JobState } from '../model/states.js';

import type { ChangeFeed, RelayableFeed } from './change-feed.js';
import type { DeciderStore } from './decider-store.js';
import type { JobRecord, NewJob } from './job-record.js';
import type { NodeGauge } from './node-gauge.js';
import type { RetentionStore, UsageInterval } from './retention-store.js';

export type { ChangeFeed, RelayableFeed, RelayOffer, StoreChange } from './change-feed.js';
export type {
  Assignment,
  DeciderStore,
  FleetDecisions,
  FleetPreemption,
  FleetSnapshot,
  HeldGpus,
  LeaseTry,
  NodeAssignments,
  NodeReport,
  ReportedRun,
} from './decider-store.js';
export { frozenRecord, type JobRecord, type NewJob, newJobRecord, runSettings } from './job-record.js';
export type { NodeGauge } from './node-gauge.js';
export type { RetentionStore, UsageInterval } from './retention-store.js';

/**
 * Gantry's persistent state behind one asynchronous interface, so that the
 * embedded SQLite store and a shared database implement the same contract
 * and nothing above this file knows which one it talks to.
 *
 * Rules every implementation keeps:
 * - A write that cannot be made (disk full, database unreachable) rejects
 *   with StoreUnavailableError and changes nothing. A write whose reply is
 *   lost (the connection drops after the commit) rejects so too, though it
 *   committed: every write a job's run makes is safe to repeat (a job
 *   update's rules are in jobs/run-writes.ts; `logs.append` by sequence).
 * - `jobs.insert` is atomic with its idempotency check: two inserts with the
 *   same owner and key yield one job, whatever their timing.
 * - `jobs.update` with `expect` is a compare-and-set: it changes the job only
 *   if its state is still the expected one, else resolves undefined.
 * - Records handed out are frozen and never change; a write yields a new one.
 * - A write given a Fence is made only while the job is still that node's
 *   and that attempt's, held by a process of the node no newer than the
 *   fence's epoch (`nodeEpoch` ≤ the fence's), and not ended; else it
 *   changes nothing (a job update resolves undefined, a log write rejects
 *   with FencedError).
 * - A job update that puts the job in `queued` is made only while no cancel
 *   was asked for it; else it resolves undefined. With the cancel's own
 *   compare-and-set on an active state (JobService.cancel), a queued job
 *   never holds a cancel, whichever write lands first (the rule:
 *   jobs/retry-policy.ts, `cancelledInstead`).
 */
export interface Store {
  readonly jobs: JobStore;
  readonly logs: LogStore;
  readonly settings: SettingsStore;
  readonly nodes: NodeStore;
  readonly audit: AuditStore;
  readonly retention: RetentionStore;
  /** What other processes changed, for a store shared by several nodes; null for a store this process alone writes. */
  readonly changes: ChangeFeed | null;
  /** The same feed where one node can relay it to the others (fleet/change-relay.ts); null where it cannot. */
  readonly relayableChanges: RelayableFeed | null;
  /** The fleet's one decider (GANTRY_FLEET_DECIDER=elected): its lease, assignments and the nodes' reports; null for a store this process alone writes. */
  readonly decider: DeciderStore | null;
  /** Rejects when a write cannot be made now (for readiness). */
  probeWritable(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The fields a write may change. `endAttempt` adds the attempt that ended
 * to the job's `attempts`, in the same compare-and-set: its number, node,
 * GPUs and start as the row had them before this write, and its log's end
 * as the log has it then.
 */
export type JobPatch = Partial<
  Pick<
    JobRecord,
    | 'state'
    | 'containerId'
    | 'gpus'
    | 'node'
    | 'attempt'
    | 'nodeEpoch'
    | 'notBefore'
    | 'gpuMemoryMiB'
    | 'gpuTelemetry'
    | 'exitCode'
    | 'reason'
    | 'result'
    | 'resultDocument'
    | 'pullStatus'
    | 'pullProgress'
    | 'cancelRequested'
    | 'startedAt'
    | 'finishedAt'
    | 'deadlineAt'
  >
> & { endAttempt?: AttemptEnd };

/**
 * Who may write about a job's run: the node that took it, for the attempt
 * it took, from the process (the node's epoch) that holds the run. Two
 * processes of one node name share (node, attempt); the epoch tells an
 * older one (paused, then replaced by a newer one that adopted the run)
 * from the newer, whose writes alone are made once it stamped the job.
 */
export interface Fence {
  node: string;
  attempt: number;
  epoch: number;
}

/** The conditions of a compare-and-set update. */
export interface UpdateGuard {
  /** The state the job must still be in. */
  state?: JobState;
  /** The run the writer must still own (and the job not ended). */
  fence?: Fence;
}

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
  /**
   * A job. A store shared by several nodes may answer from a cache that
   * lags other nodes' writes by the time it takes to hear of them; `fresh`
   * reads the database itself (a compare-and-set never needs it: it fails
   * on a stale state, and the next read is fresh).
   */
  get(id: string, o?: { fresh?: boolean }): Promise<JobRecord | undefined>;
  /** Changes a job; with a guard, only while its conditions hold (else undefined). */
  update(id: string, patch: JobPatch, expect?: UpdateGuard): Promise<JobRecord | undefined>;
  /**
   * Takes a queued job for a node: sets `node` (and `nodeEpoch`) while the job is still
   * queued, no node has it and the node is up, undrained and of that epoch.
   * Of two nodes claiming one job, exactly one gets the record; the other
   * gets undefined. A node claiming a queued job it already took gets it
   * again: the same claim, repeated after its reply was lost. With `assigned`
   * (the fleet's decider gave the job to this node), only while that
   * assignment stands and its term is the decider's current one: a deposed
   * decider's assignment is refused.
   */
  claim(id: string, node: { name: string; epoch: number }, assigned?: { term: number }): Promise<JobRecord | undefined>;
  /** Queued jobs no node has taken yet, in scheduling order: higher priority first, then FIFO. */
  queued(): Promise<JobRecord[]>;
  /** The node's jobs that hold, or are about to hold, a container (pulling, starting, running). */
  active(node: string): Promise<JobRecord[]>;
  /** How many jobs each node holds active (pulling, starting, running), in one read whatever the fleet's size; a node with none is absent. */
  activeByNode(): Promise<Map<string, number>>;
  /**
   * The node's unfinished jobs, in one read (the node's reconcile, every
   * beat): those it took but did not start (queued, node set: a process
   * that dies leaves them so), higher priority first, then FIFO; and its
   * active ones, as `active` gives them.
   */
  owned(node: string): Promise<OwnedJobs>;
  /**
   * Jobs that hold GPUs now, on every node (the node view, the allocated-GPU gauges): pulling, starting
   * or running with cards recorded, in insertion order. A queued job holds none, even one a node claimed.
   */
  holdingGpus(): Promise<JobRecord[]>;
  /** Newest first. */
  list(filter: ListFilter): Promise<JobRecord[]>;
  /**
   * The jobs that could have held GPUs at some time in [from, to) (ISO
   * times as `toISOString` writes them): created before `to`, and not
   * finished before `from`; in insertion order. A superset: usage
   * accounting (jobs/usage.ts) clips each attempt to the window itself.
   */
  overlapping(fromIso: string, toIso: string): Promise<JobRecord[]>;
  /**
   * What usage accounting reads for [from, to), in one snapshot: the jobs
   * `overlapping` gives, and the GPU time of jobs retention pruned that meets
   * the window (a job is in one or the other, never both).
   */
  usageSources(fromIso: string, toIso: string): Promise<{ records: JobRecord[]; pruned: UsageInterval[] }>;
  /** Job counts by state and owner. */
  countByStateAndOwner(): Promise<{ state: JobState; owner: string; count: number }[]>;
  /** How many jobs wait in the queue (no node has taken them), and when the oldest of them was submitted. */
  queueSummary(): Promise<{ length: number; oldestCreatedAt: string | null }>;
  /** Gives each job not ended that has no settings (stored before they were) those `resolve` makes of its spec; how many. */
  fillSettings(resolve: (spec: JobSpec) => RunSettings): Promise<number>;
}

export interface LogStore {
  state(jobId: string): Promise<LogState>;
  /**
   * Stores records (numbered up to `next.nextSeq - 1`) and the capture's new
   * state, together. Idempotent by sequence: records whose first seq is
   * already stored with the same content are the same append repeated, a
   * success that writes nothing; other content there rejects (ChunkConflictError).
   */
  append(jobId: string, records: readonly NewLogRecord[], next: LogState, fence?: Fence): Promise<void>;
  saveState(jobId: string, state: LogState, fence?: Fence): Promise<void>;
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

/** What a node tells the fleet about itself. */
export interface NodeInfo {
  name: string;
  labels: Readonly<Record<string, string>>;
  gpus: readonly NodeGpu[];
  version: string;
  leaseSeconds: number;
}

export interface NodeRecord extends NodeInfo {
  /** Bumped by each registration: the writes of an older process of the node are refused. */
  readonly epoch: number;
  readonly state: NodeState;
  readonly drained: boolean;
  readonly startedAt: string;
  readonly heartbeatAt: string;
  /** Measured by the store's clock, so nodes' clocks need not agree. */
  readonly heartbeatAgeSeconds: number;
}

/** A job settled because its node was lost: its new record, and whether it was queued again. */
export interface SettledJob {
  record: JobRecord;
  requeued: boolean;
}

/**
 * Whether the nodes found due may be declared lost now: `othersUp` counts
 * the nodes other than the observer that are still up, the due ones included.
 */
export type ExpiryCheck = (due: readonly NodeRecord[], othersUp: number) => boolean;

/**
 * What a renewal learns on the way, so that a beat of a node in a quiet
 * fleet costs the store that one statement: the node's record is read
 * again only when its drain changed, and the fleet's expiry runs only when
 * a lease ran out.
 */
export interface Renewal {
  /** The node's drain as it stands (an operator may have changed it on another node). */
  drained: boolean;
  /** Whether another node's lease has run out: it is due to be declared lost. */
  othersDue: boolean;
}

/**
 * The registry of nodes sharing the store, and their leases. Time is the
 * store's own clock: a lease expires `leaseSeconds` after the node last
 * renewed it, as the store measures.
 */
export interface NodeStore {
  /** Registers a node's new process: a new epoch, state up, the lease renewed; `drained` is kept. */
  register(info: NodeInfo): Promise<NodeRecord>;
  /** Renews the lease of that epoch; null once the node was declared lost or registered again by another process. */
  renew(name: string, epoch: number): Promise<Renewal | null>;
  get(name: string): Promise<NodeRecord | undefined>;
  list(): Promise<NodeRecord[]>;
  /**
   * Every node as its metrics report it, by name, in one read: counts
   * only, so that a scrape of any node of a large fleet stays small.
   */
  gauges(): Promise<NodeGauge[]>;
  setDrained(name: string, drained: boolean): Promise<NodeRecord | undefined>;
  /**
   * Declares every up node whose lease has expired lost and, in the same
   * transaction, settles its unfinished jobs with `settle` (a claimed job
   * not yet started goes back to the queue unchanged). Two nodes expiring
   * at once settle each lost node once. A node whose row another
   * transaction holds is left for a later call rather than waited for.
   * With `check`, nothing is declared unless it agrees.
   */
  expire(
    settle: (record: JobRecord, node: NodeRecord) => JobPatch,
    check?: ExpiryCheck,
  ): Promise<{ lost: NodeRecord[]; settled: SettledJob[] }>;
}

export interface AuditFilter {
  actor?: string | undefined;
  action?: AuditAction | undefined;
  target?: string | undefined;
  outcome?: AuditOutcome | undefined;
  /** ISO times in UTC as `toISOString` writes them: only records at or after `from`, and before `to`. */
  from?: string | undefined;
  to?: string | undefined;
  /** The `seq` cursor of the previous page: only older records. */
  beforeSeq?: number | undefined;
  limit: number;
}

/**
 * The audit trail, append-only: a record is never changed (there is no
 * update here, and each store's schema refuses one); the only removal is
 * retention's, of every record written before a cutoff.
 */
export interface AuditStore {
  /** Appends a record; the store gives it its `seq` and its time (`at`, by the store's clock). */
  append(record: NewAuditRecord): Promise<void>;
  /** Newest first. */
  list(filter: AuditFilter): Promise<AuditRecord[]>;
  /**
   * Deletes the records written more than `days` ago by the store's clock
   * (PostgreSQL's in a fleet, so no node's clock decides), for retention;
   * how many.
   */
  deleteOlderThan(days: number): Promise<number>;
}

/** A node's unfinished jobs (JobStore.owned). */
export interface OwnedJobs {
  claimed: JobRecord[];
  active: JobRecord[];
}
