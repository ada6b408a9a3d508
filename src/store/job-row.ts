import type { AttemptRecord } from '../model/attempt.js';
import type { GpuTelemetry } from '../model/gpu-telemetry.js';
import type { JobSpec, JsonValue } from '../model/job.js';
import type { RunSettings } from '../model/run-settings.js';
import { type JobState, TERMINAL_STATES } from '../model/states.js';
import { frozenRecord, type JobPatch, type JobRecord, type NewJob, type OwnedJobs } from './store.js';

/**
 * The `jobs` table as both stores hold it: its columns, and the mapping
 * between a row and a JobRecord. Lists and objects are JSON text in either
 * database (`spec`, `gpus`, `attempts`, `gpu_telemetry`, `settings`, `result_document`); the
 * one difference is `cancel_requested`, an integer 0/1 in SQLite and a
 * boolean in PostgreSQL. The SQL that reads and writes the rows stays each
 * store's own.
 */
export interface JobRow {
  seq: number;
  id: string;
  owner: string;
  name: string | null;
  state: JobState;
  priority: number;
  spec: string;
  spec_hash: string;
  idempotency_key: string | null;
  request_id: string | null;
  container_id: string | null;
  gpus: string;
  node: string | null;
  attempt: number;
  node_epoch: number;
  attempts: string;
  not_before: string | null;
  gpu_memory_mib: number | null;
  gpu_telemetry: string | null;
  exit_code: number | null;
  reason: string | null;
  result: string | null;
  result_document: string | null;
  pull_status: string | null;
  pull_progress: string | null;
  cancel_requested: number | boolean;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  deadline_at: string | null;
  settings: string | null;
}

/** Every column of `jobs`, named rather than `*`, so a later migration cannot change what a prepared statement returns. */
export const JOB_COLUMNS =
  'seq, id, owner, name, state, priority, spec, spec_hash, idempotency_key, request_id, container_id, gpus, node, attempt, node_epoch, attempts, not_before, ' +
  'gpu_memory_mib, gpu_telemetry, exit_code, reason, result, pull_status, pull_progress, cancel_requested, created_at, started_at, finished_at, ' +
  'deadline_at, settings, result_document';

/** SQL lists of fixed state names (constants, never input). */
export const ENDED_SQL = `(${[...TERMINAL_STATES].map((s) => `'${s}'`).join(', ')})`;
/** The states of a job that holds, or is about to hold, a container (and the GPUs it was given). */
export const ACTIVE_SQL = `('pulling', 'starting', 'running')`;

export type ColumnField = Exclude<keyof JobPatch, 'endAttempt'>;

/** JobPatch's fields and the columns that hold them; the only names an UPDATE is built from. */
export const COLUMN: Readonly<Record<ColumnField, string>> = {
  state: 'state',
  containerId: 'container_id',
  gpus: 'gpus',
  node: 'node',
  attempt: 'attempt',
  nodeEpoch: 'node_epoch',
  notBefore: 'not_before',
  gpuMemoryMiB: 'gpu_memory_mib',
  gpuTelemetry: 'gpu_telemetry',
  exitCode: 'exit_code',
  reason: 'reason',
  result: 'result',
  resultDocument: 'result_document',
  pullStatus: 'pull_status',
  pullProgress: 'pull_progress',
  cancelRequested: 'cancel_requested',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  deadlineAt: 'deadline_at',
};

/** The patch fields a write sets, in COLUMN's order (one statement text per set of fields). */
export function patchKeys(patch: JobPatch): ColumnField[] {
  return (Object.keys(COLUMN) as ColumnField[]).filter((k) => patch[k] !== undefined);
}

/** A patch value as its column holds it: JSON text for lists and objects; the store maps `cancelRequested`. */
export function columnValue(key: ColumnField, value: unknown): unknown {
  if (key === 'gpus') return JSON.stringify(value);
  if (key === 'gpuTelemetry' || key === 'resultDocument') return value === null ? null : JSON.stringify(value);
  return value;
}

/** The columns an insert writes (the others keep their defaults, which newJobRecord states). */
export function insertValues(job: NewJob) {
  return {
    id: job.id,
    owner: job.owner,
    name: job.spec.name ?? null,
    priority: job.spec.priority ?? 0,
    spec: JSON.stringify(job.spec),
    specHash: job.specHash,
    idempotencyKey: job.idempotencyKey,
    requestId: job.requestId,
    createdAt: job.createdAt,
    settings: settingsText(job.settings),
  };
}

export function settingsText(settings: RunSettings): string {
  return JSON.stringify(settings);
}

/** The record of a row, frozen (store.ts: frozenRecord). */
export function toRecord(row: JobRow): JobRecord {
  return frozenRecord({
    seq: row.seq,
    id: row.id,
    owner: row.owner,
    name: row.name,
    state: row.state,
    priority: row.priority,
    spec: JSON.parse(row.spec) as JobSpec,
    specHash: row.spec_hash,
    idempotencyKey: row.idempotency_key,
    requestId: row.request_id,
    containerId: row.container_id,
    gpus: JSON.parse(row.gpus) as string[],
    node: row.node,
    attempt: row.attempt,
    nodeEpoch: Number(row.node_epoch),
    attempts: JSON.parse(row.attempts) as AttemptRecord[],
    notBefore: row.not_before,
    gpuMemoryMiB: row.gpu_memory_mib,
    gpuTelemetry: row.gpu_telemetry === null ? null : (JSON.parse(row.gpu_telemetry) as GpuTelemetry),
    exitCode: row.exit_code,
    reason: row.reason,
    result: row.result,
    resultDocument: row.result_document === null ? null : (JSON.parse(row.result_document) as JsonValue),
    pullStatus: row.pull_status,
    pullProgress: row.pull_progress,
    cancelRequested: row.cancel_requested === true || row.cancel_requested === 1,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    deadlineAt: row.deadline_at,
    settings: row.settings === null ? null : (JSON.parse(row.settings) as RunSettings),
  });
}

/** A node's unfinished jobs, read in insertion order, split and ordered as JobStore.owned gives them. */
export function ownedJobs(records: readonly JobRecord[]): OwnedJobs {
  const claimed = records.filter((r) => r.state === 'queued').sort((a, b) => b.priority - a.priority || a.seq - b.seq);
  return { claimed, active: records.filter((r) => r.state !== 'queued') };
}
