import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { AttemptEnd } from '../../model/attempt.js';
import type { JobSpec } from '../../model/job.js';
import type { RunSettings } from '../../model/run-settings.js';
import type { JobState } from '../../model/states.js';
import {
  ACTIVE_SQL,
  COLUMN,
  type ColumnField,
  columnValue,
  ENDED_SQL,
  insertValues,
  JOB_COLUMNS,
  type JobRow,
  ownedJobs,
  patchKeys,
  settingsText,
  toRecord,
} from '../job-row.js';
import type { JobPatch, JobRecord, JobStore, ListFilter, NewJob, OwnedJobs, UpdateGuard, UsageInterval } from '../store.js';
import { pgText, read, transaction, write } from './db.js';
import { returningAnnounced } from './job-announcement.js';
import type { RecordCache } from './record-cache.js';

function toSql(key: ColumnField, value: unknown): unknown {
  if (key === 'cancelRequested') return value === true;
  const v = columnValue(key, value);
  return typeof v === 'string' ? pgText(v) : v;
}

/** Placeholders in the order their values are pushed. */
class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/** Names of prepared statements built at run time, by their text (a statement's name must always mean one text). */
const names = new Map<string, string>();
function statementName(prefix: string, text: string): string {
  let name = names.get(text);
  if (name === undefined) names.set(text, (name = `${prefix}_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`));
  return name;
}

/**
 * The SET item that appends the ended attempt (JobPatch.endAttempt) to
 * `attempts`. Every column an UPDATE reads is the row as it was before it,
 * so the attempt gets the number, node, GPUs and start it ran with,
 * whatever else the same write changes; its log's end is read in the same
 * statement (a fenced log write holds the job's row, so none lands between).
 */
function appendAttempt(p: Params, e: AttemptEnd): string {
  return (
    `attempts = (attempts::jsonb || jsonb_build_array(jsonb_build_object(` +
    `'attempt', attempt, 'node', node, 'gpus', gpus::jsonb, 'startedAt', started_at, ` +
    `'outcome', ${p.add(e.outcome)}::text, 'cause', ${p.add(e.cause)}::text, 'retried', ${p.add(e.retried)}::boolean, ` +
    `'reason', ${p.add(pgText(e.reason))}::text, 'exitCode', ${p.add(e.exitCode)}::int, 'finishedAt', ${p.add(e.finishedAt)}::text, ` +
    `'gpuTelemetry', gpu_telemetry::jsonb, ` +
    `'logEnd', COALESCE((SELECT l.next_seq - 1 FROM log_state l WHERE l.job_id = jobs.id), 0))))::text`
  );
}

/**
 * A patch of the GPU telemetry summary alone: a sample of a running job,
 * every few seconds for every GPU job, which no other node acts on. It is
 * written to the row (the job's view reads it there) but not announced, so
 * telemetry costs no notification to every node; other nodes' record caches
 * keep a running GPU job's record briefly for it (record-cache.ts).
 */
function telemetryOnly(patch: JobPatch): boolean {
  return patch.endAttempt === undefined && patchKeys(patch).every((k) => k === 'gpuTelemetry') && patch.gpuTelemetry !== undefined;
}

/**
 * The statement that applies a patch to one job, under a guard, and
 * announces the change (all but a telemetry sample's, telemetryOnly): one UPDATE, so it is a compare-and-set on the row.
 * With an empty patch, a read under the same guard.
 */
export function updateQuery(origin: string, id: string, patch: JobPatch, guard?: UpdateGuard): pg.QueryConfig {
  const keys = patchKeys(patch);
  const p = new Params();
  const where = [`id = ${p.add(id)}`];
  if (guard?.state !== undefined) where.push(`state = ${p.add(guard.state)}`);
  if (guard?.fence !== undefined) {
    const { node, attempt, epoch } = guard.fence;
    where.push(`node = ${p.add(node)}`, `attempt = ${p.add(attempt)}`, `node_epoch <= ${p.add(epoch)}`, `state NOT IN ${ENDED_SQL}`);
  }
  if (patch.state === 'queued') where.push('NOT cancel_requested');
  let text: string;
  if (keys.length === 0 && patch.endAttempt === undefined) {
    text = `SELECT ${JOB_COLUMNS} FROM jobs WHERE ${where.join(' AND ')}`;
  } else {
    const sets = [
      ...keys.map((k) => `${COLUMN[k]} = ${p.add(toSql(k, patch[k]))}`),
      ...(patch.endAttempt ? [appendAttempt(p, patch.endAttempt)] : []),
    ].join(', ');
    text = telemetryOnly(patch)
      ? `UPDATE jobs SET ${sets} WHERE ${where.join(' AND ')} RETURNING ${JOB_COLUMNS}`
      : `WITH u AS (UPDATE jobs SET ${sets} WHERE ${where.join(' AND ')} RETURNING ${JOB_COLUMNS}) ${returningAnnounced('u', p.add(origin))}`;
  }
  return { name: statementName('gantry_job_update', text), text, values: p.values };
}

const GET = `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1`;
const BY_KEY = `SELECT ${JOB_COLUMNS} FROM jobs WHERE owner = $1 AND idempotency_key = $2`;
// ON CONFLICT DO NOTHING on the (owner, idempotency_key) index: the
// idempotency check and the insert are one statement, fleet-wide; a
// concurrent insert with the same key waits for this one and does nothing.
// The labels go in the same statement (their foreign key is checked at its
// end), and the announcement with its commit.
const INSERT = `
  WITH ins AS (
    INSERT INTO jobs (id, owner, name, state, priority, spec, spec_hash, idempotency_key, request_id, created_at, settings)
    VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $13)
    ON CONFLICT DO NOTHING
    RETURNING ${JOB_COLUMNS}
  ), labels AS (
    INSERT INTO job_labels (job_id, key, value)
    SELECT ins.id, l.key, l.value FROM ins, unnest($10::text[], $11::text[]) AS l (key, value)
  )
  ${returningAnnounced('ins', '$12')}`;
// FOR SHARE on the node's row: a claim waits for an `expire` declaring the
// node lost (then finds it lost), or `expire` waits for the claim (then
// finds the claimed job): a job is never claimed by a node already settled.
// With a decider's term ($5), FOR SHARE on the decider's row likewise orders
// the claim against a takeover: an assignment of a term no longer current is refused.
const CLAIM = `
  WITH u AS (
    UPDATE jobs SET node = $2, node_epoch = $3
    WHERE id = $1 AND state = 'queued' AND (node IS NULL OR node = $2)
      AND EXISTS (SELECT 1 FROM nodes WHERE name = $2 AND epoch = $3 AND state = 'up' AND NOT drained FOR SHARE)
      AND ($5::bigint IS NULL OR (
        EXISTS (SELECT 1 FROM decider WHERE id = 1 AND term = $5 FOR SHARE)
        AND EXISTS (SELECT 1 FROM decider_assignments WHERE job_id = $1 AND node = $2 AND term = $5)))
    RETURNING ${JOB_COLUMNS}
  )
  ${returningAnnounced('u', '$4')}`;
const QUEUED = `SELECT ${JOB_COLUMNS} FROM jobs WHERE state = 'queued' AND node IS NULL ORDER BY priority DESC, seq`;
const ACTIVE = `SELECT ${JOB_COLUMNS} FROM jobs WHERE node = $1 AND state IN ${ACTIVE_SQL} ORDER BY seq`;
const ACTIVE_BY_NODE = `SELECT node, count(*)::int AS n FROM jobs WHERE node IS NOT NULL AND state IN ${ACTIVE_SQL} GROUP BY node`;
const OWNED = `SELECT ${JOB_COLUMNS} FROM jobs WHERE node = $1 AND state NOT IN ${ENDED_SQL} ORDER BY seq`;
const HOLDING_GPUS = `SELECT ${JOB_COLUMNS} FROM jobs WHERE state IN ${ACTIVE_SQL} AND gpus <> '[]' ORDER BY seq`;
const UNSET = `SELECT id, spec FROM jobs WHERE settings IS NULL AND state NOT IN ${ENDED_SQL} FOR UPDATE`;
const SET_SETTINGS = `UPDATE jobs SET settings = $2 WHERE id = $1 AND settings IS NULL`;
// Two arms, each on an index of its own: the unfinished jobs (jobs_unfinished)
// and those finished in or after the window (jobs_finished).
const OVERLAPPING = `
  SELECT ${JOB_COLUMNS} FROM jobs WHERE finished_at IS NULL AND created_at < $2
  UNION ALL
  SELECT ${JOB_COLUMNS} FROM jobs WHERE finished_at >= $1 AND created_at < $2
  ORDER BY seq`;
// The GPU time of pruned jobs that meets [$1, $2) (retention.ts keeps it), along usage_intervals_ended.
const PRUNED_USAGE = `
  SELECT job_id AS "jobId", owner, attempt, gpus, started_at AS "startedAt", ended_at AS "endedAt"
  FROM usage_intervals WHERE ended_at > $1 AND started_at < $2 ORDER BY job_id, attempt`;
// Counts read no job: job_counts holds them, as +1/-1 rows its triggers
// append (migrations.ts, HISTORY). FOLD_COUNTS replaces the rows no other
// fold holds (skipped, never waited for) with their sums; COUNT does the
// same and reads the table as it was before, whose sums the folding keeps.
const FOLD = `
  gone AS (
    DELETE FROM job_counts WHERE ctid = ANY(ARRAY(SELECT ctid FROM job_counts FOR UPDATE SKIP LOCKED))
    RETURNING owner, state, waiting, count
  ), folded AS (
    INSERT INTO job_counts (owner, state, waiting, count)
    SELECT owner, state, waiting, SUM(count) FROM gone GROUP BY owner, state, waiting HAVING SUM(count) <> 0
  )`;
export const FOLD_COUNTS = `WITH ${FOLD} SELECT COUNT(*)::bigint AS rows FROM gone`;
const COUNT = `
  WITH ${FOLD}
  SELECT state, owner, SUM(count)::bigint AS count FROM job_counts GROUP BY state, owner HAVING SUM(count) <> 0`;
// The length from job_counts, the oldest along jobs_waiting.
const QUEUE_SUMMARY = `
  SELECT COALESCE((SELECT SUM(count) FROM job_counts WHERE waiting), 0)::bigint AS length,
    (SELECT created_at FROM jobs WHERE state = 'queued' AND node IS NULL ORDER BY created_at LIMIT 1) AS "oldestCreatedAt"`;

/**
 * Jobs in PostgreSQL, shared by every node. `get` is served from the
 * record cache while the change feed vouches for it (record-cache.ts), and
 * every single-job read and write here refreshes it. The fixed statements
 * are named, so each pooled connection parses and plans them once.
 */
export class PgJobStore implements JobStore {
  constructor(
    private readonly pool: pg.Pool,
    /** This node's name, the origin of the changes it announces. */
    private readonly origin: string,
    private readonly cache: RecordCache,
  ) {}

  /**
   * Runs a single-job statement; none back means the job changed under a
   * guard, and a failure may have committed (its reply lost): either way its
   * record is dropped. A read's record is kept. A write's is not, and the
   * job's record is dropped: a read of the job begun before the write may
   * still be in flight, and its older record must not be kept over the
   * write (the write's own announcement comes later).
   */
  private async one(id: string, run: () => Promise<JobRow[]>, wrote = false): Promise<JobRecord | undefined> {
    const ticket = this.cache.ticket();
    const [row] = await run().catch((err: unknown) => {
      this.cache.drop(id);
      throw err;
    });
    if (!row || wrote) this.cache.drop(id);
    if (!row) return undefined;
    return wrote ? toRecord(row) : this.cache.keep(toRecord(row), ticket);
  }

  async insert(job: NewJob): Promise<{ record: JobRecord; created: boolean }> {
    const labels = Object.entries(job.spec.labels ?? {});
    const v = insertValues(job);
    const [row] = await write<JobRow>(this.pool, {
      name: 'gantry_job_insert',
      text: INSERT,
      values: [
        v.id,
        v.owner,
        pgText(v.name),
        v.priority,
        v.spec,
        v.specHash,
        v.idempotencyKey,
        v.requestId,
        v.createdAt,
        labels.map(([k]) => pgText(k)),
        labels.map(([, l]) => pgText(l)),
        this.origin,
        v.settings,
      ],
    });
    if (row) return { record: toRecord(row), created: true };
    const [prior] =
      job.idempotencyKey === null
        ? []
        : await read<JobRow>(this.pool, { name: 'gantry_job_by_key', text: BY_KEY, values: [job.owner, job.idempotencyKey] });
    if (!prior) throw new Error(`job ${job.id} was neither inserted nor found by its idempotency key`);
    return { record: toRecord(prior), created: false };
  }

  async get(id: string, o: { fresh?: boolean } = {}): Promise<JobRecord | undefined> {
    return (
      (o.fresh ? undefined : this.cache.get(id)) ??
      this.one(id, () => read<JobRow>(this.pool, { name: 'gantry_job_get', text: GET, values: [id] }))
    );
  }

  async update(id: string, patch: JobPatch, expect?: UpdateGuard): Promise<JobRecord | undefined> {
    return this.one(id, () => write<JobRow>(this.pool, updateQuery(this.origin, id, patch, expect)), true);
  }

  async claim(id: string, node: { name: string; epoch: number }, assigned?: { term: number }): Promise<JobRecord | undefined> {
    const values = [id, node.name, node.epoch, this.origin, assigned?.term ?? null];
    return this.one(id, () => write<JobRow>(this.pool, { name: 'gantry_job_claim', text: CLAIM, values }), true);
  }

  async queued(): Promise<JobRecord[]> {
    return (await read<JobRow>(this.pool, { name: 'gantry_jobs_queued', text: QUEUED })).map(toRecord);
  }

  async active(node: string): Promise<JobRecord[]> {
    return (await read<JobRow>(this.pool, { name: 'gantry_jobs_active', text: ACTIVE, values: [node] })).map(toRecord);
  }

  async activeByNode(): Promise<Map<string, number>> {
    const rows = await read<{ node: string; n: number }>(this.pool, { name: 'gantry_jobs_active_by_node', text: ACTIVE_BY_NODE });
    return new Map(rows.map((r) => [r.node, r.n]));
  }

  async owned(node: string): Promise<OwnedJobs> {
    return ownedJobs((await read<JobRow>(this.pool, { name: 'gantry_jobs_owned', text: OWNED, values: [node] })).map(toRecord));
  }

  async holdingGpus(): Promise<JobRecord[]> {
    return (await read<JobRow>(this.pool, { name: 'gantry_jobs_holding_gpus', text: HOLDING_GPUS })).map(toRecord);
  }

  async list(f: ListFilter): Promise<JobRecord[]> {
    const p = new Params();
    const where: string[] = [];
    if (f.owner !== undefined) where.push(`j.owner = ${p.add(f.owner)}`);
    if (f.states && f.states.length > 0) where.push(`j.state = ANY(${p.add([...f.states])}::text[])`);
    if (f.label) {
      where.push(
        `EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = j.id AND l.key = ${p.add(f.label.key)} AND l.value = ${p.add(f.label.value)})`,
      );
    }
    if (f.beforeSeq !== undefined) where.push(`j.seq < ${p.add(f.beforeSeq)}`);
    const text = `SELECT ${JOB_COLUMNS.replace(/(^|, )/g, '$1j.')} FROM jobs j ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY j.seq DESC LIMIT ${p.add(f.limit)}`;
    return (await read<JobRow>(this.pool, { text, values: p.values })).map(toRecord);
  }

  async overlapping(fromIso: string, toIso: string): Promise<JobRecord[]> {
    return (await read<JobRow>(this.pool, { name: 'gantry_jobs_overlapping', text: OVERLAPPING, values: [fromIso, toIso] })).map(toRecord);
  }

  /** One REPEATABLE READ transaction: a job pruned meanwhile is counted once, as a job or as pruned usage. */
  async usageSources(fromIso: string, toIso: string): Promise<{ records: JobRecord[]; pruned: UsageInterval[] }> {
    return transaction(this.pool, async (c) => {
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      const jobs = await c.query<JobRow>({ name: 'gantry_jobs_overlapping', text: OVERLAPPING, values: [fromIso, toIso] });
      const pruned = await c.query<Omit<UsageInterval, 'gpus'> & { gpus: string }>({
        name: 'gantry_usage_pruned',
        text: PRUNED_USAGE,
        values: [fromIso, toIso],
      });
      return {
        records: jobs.rows.map(toRecord),
        pruned: pruned.rows.map((r) => ({ ...r, gpus: JSON.parse(r.gpus) as string[] })),
      };
    });
  }

  async countByStateAndOwner(): Promise<{ state: JobState; owner: string; count: number }[]> {
    return write<{ state: JobState; owner: string; count: number }>(this.pool, { name: 'gantry_jobs_count', text: COUNT });
  }

  async queueSummary(): Promise<{ length: number; oldestCreatedAt: string | null }> {
    const [row] = await read<{ length: number; oldestCreatedAt: string | null }>(this.pool, {
      name: 'gantry_jobs_queue_summary',
      text: QUEUE_SUMMARY,
    });
    return { length: row?.length ?? 0, oldestCreatedAt: row?.oldestCreatedAt ?? null };
  }

  /** One transaction; the rows it fills are locked, so nodes starting together fill each job once. */
  async fillSettings(resolve: (spec: JobSpec) => RunSettings): Promise<number> {
    const ids = await transaction(this.pool, async (c) => {
      const { rows } = await c.query<{ id: string; spec: string }>(UNSET);
      for (const r of rows) await c.query(SET_SETTINGS, [r.id, settingsText(resolve(JSON.parse(r.spec) as JobSpec))]);
      return rows.map((r) => r.id);
    });
    for (const id of ids) this.cache.drop(id);
    return ids.length;
  }
}
