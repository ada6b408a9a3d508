import type { Statement } from 'better-sqlite3';
import { LRUCache } from 'lru-cache';
import type { JobSpec } from '../../model/job.js';
import type { RunSettings } from '../../model/run-settings.js';
import { isTerminal, type JobState } from '../../model/states.js';
import {
  ACTIVE_SQL,
  COLUMN,
  type ColumnField,
  columnValue,
  ENDED_SQL,
  insertValues,
  type JobRow,
  ownedJobs,
  patchKeys,
  settingsText,
  toRecord,
} from '../job-row.js';
import type { JobPatch, JobRecord, JobStore, ListFilter, NewJob, OwnedJobs, UpdateGuard, UsageInterval } from '../store.js';
import type { Db } from './db.js';
import { writing } from './errors.js';

/**
 * Appends the ended attempt (JobPatch.endAttempt) to `attempts`. In an
 * UPDATE every column read is the row as it was before it, so the attempt
 * gets the number, node, GPUs and start it ran with, whatever else the
 * same write changes; its log's end is read in the same statement.
 */
const APPEND_ATTEMPT = `attempts = json_insert(attempts, '$[#]', json_object(
  'attempt', attempt, 'node', node, 'gpus', json(gpus), 'startedAt', started_at,
  'outcome', @eaOutcome, 'cause', @eaCause, 'retried', json(@eaRetried), 'reason', @eaReason,
  'exitCode', @eaExitCode, 'finishedAt', @eaFinishedAt, 'gpuTelemetry', json(gpu_telemetry),
  'logEnd', COALESCE((SELECT l.next_seq - 1 FROM log_state l WHERE l.job_id = jobs.id), 0)))`;

function toSql(key: ColumnField, value: unknown): unknown {
  return key === 'cancelRequested' ? (value ? 1 : 0) : columnValue(key, value);
}

/** How many job records are kept in memory (about 1 KB each). */
const RECORD_CACHE_MAX = 4096;

/**
 * Jobs in SQLite. Statements are prepared once. This process is the only
 * writer of its database file, and every write to `jobs` goes through this
 * class (the node store's writes too, through its methods below), so it can
 * keep a write-through cache of records (a status poll is mostly a `get`),
 * dropping entries on each write.
 *
 * A SQLite file is one node's: `node` is still recorded (claim, fences,
 * expire keep the contract every store keeps), but only this process
 * claims, so a claim is never contended in practice.
 */
export class SqliteJobStore implements JobStore {
  /** lru-cache re-links preallocated slots on a hit instead of growing a Map (less garbage per poll). */
  private readonly records = new LRUCache<string, JobRecord>({ max: RECORD_CACHE_MAX });
  private readonly insertStmt: Statement;
  private readonly insertLabelStmt: Statement;
  private readonly byIdStmt: Statement;
  private readonly byKeyStmt: Statement;
  private readonly queuedStmt: Statement;
  private readonly claimStmt: Statement;
  private readonly activeStmt: Statement;
  private readonly ownedStmt: Statement;
  private readonly unclaimStmt: Statement;
  private readonly holdingGpusStmt: Statement;
  private readonly activeByNodeStmt: Statement;
  private readonly prunedUsageStmt: Statement;
  private readonly overlappingStmt: Statement;
  private readonly countStmt: Statement;
  private readonly queueSummaryStmt: Statement;
  private readonly unsetStmt: Statement;
  private readonly setSettingsStmt: Statement;
  /** UPDATE statements by column set and guard, prepared once each. */
  private readonly updates = new Map<string, Statement>();

  constructor(private readonly db: Db) {
    // ON CONFLICT DO NOTHING on the (owner, idempotency_key) index: the
    // idempotency check and the insert are one statement.
    this.insertStmt = db.prepare(
      `INSERT INTO jobs (id, owner, name, state, priority, spec, spec_hash, idempotency_key, request_id, created_at, settings)
       VALUES (@id, @owner, @name, 'queued', @priority, @spec, @specHash, @idempotencyKey, @requestId, @createdAt, @settings)
       ON CONFLICT DO NOTHING`,
    );
    this.insertLabelStmt = db.prepare(`INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)`);
    this.byIdStmt = db.prepare(`SELECT * FROM jobs WHERE id = ?`);
    this.byKeyStmt = db.prepare(`SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?`);
    this.queuedStmt = db.prepare(`SELECT * FROM jobs WHERE state = 'queued' AND node IS NULL ORDER BY priority DESC, seq ASC`);
    this.claimStmt = db.prepare(
      `UPDATE jobs SET node = @name, node_epoch = @epoch WHERE id = @id AND state = 'queued' AND (node IS NULL OR node = @name)
         AND EXISTS (SELECT 1 FROM nodes WHERE name = @name AND epoch = @epoch AND state = 'up' AND drained = 0)`,
    );
    this.activeStmt = db.prepare(`SELECT * FROM jobs WHERE node = ? AND state IN ${ACTIVE_SQL} ORDER BY seq`);
    this.ownedStmt = db.prepare(`SELECT * FROM jobs WHERE node = ? AND state NOT IN ${ENDED_SQL} ORDER BY seq`);
    this.unclaimStmt = db.prepare(`UPDATE jobs SET node = NULL WHERE node = ? AND state = 'queued' RETURNING id`);
    this.activeByNodeStmt = db.prepare(
      `SELECT node, COUNT(*) AS n FROM jobs WHERE node IS NOT NULL AND state IN ${ACTIVE_SQL} GROUP BY node`,
    );
    this.holdingGpusStmt = db.prepare(`SELECT * FROM jobs WHERE state IN ${ACTIVE_SQL} AND gpus != '[]' ORDER BY seq`);
    // The GPU time of pruned jobs that meets the window (retention.ts keeps it), along usage_intervals_ended.
    this.prunedUsageStmt = db.prepare(
      `SELECT job_id AS jobId, owner, attempt, gpus, started_at AS startedAt, ended_at AS endedAt
       FROM usage_intervals WHERE ended_at > @from AND started_at < @to ORDER BY job_id, attempt`,
    );
    // Both arms use the jobs_finished index (unfinished jobs are its NULL
    // entries, the rest a range of it); an ORDER BY would make SQLite scan
    // the table in seq order instead, so the rows are sorted after.
    this.overlappingStmt = db.prepare(`SELECT * FROM jobs WHERE (finished_at IS NULL OR finished_at >= @from) AND created_at < @to`);
    // Kept by triggers on jobs (migrations.ts, 0009_scale_history): no scan of the history.
    // Kept by triggers on jobs (migrations.ts, 0009_scale_history): neither reads the history or the queue.
    this.countStmt = db.prepare(`SELECT state, owner, SUM(count) AS count FROM job_counts GROUP BY state, owner HAVING SUM(count) <> 0`);
    this.queueSummaryStmt = db.prepare(
      `SELECT COALESCE((SELECT SUM(count) FROM job_counts WHERE waiting), 0) AS length,
         (SELECT created_at FROM jobs WHERE state = 'queued' AND node IS NULL ORDER BY created_at LIMIT 1) AS oldestCreatedAt`,
    );
    this.unsetStmt = db.prepare(`SELECT id, spec FROM jobs WHERE settings IS NULL AND state NOT IN ${ENDED_SQL}`);
    this.setSettingsStmt = db.prepare(`UPDATE jobs SET settings = ? WHERE id = ? AND settings IS NULL`);
  }

  async insert(job: NewJob): Promise<{ record: JobRecord; created: boolean }> {
    const created = writing(() =>
      this.db.transaction(() => {
        const { changes } = this.insertStmt.run(insertValues(job));
        if (changes === 0) return false;
        for (const [k, v] of Object.entries(job.spec.labels ?? {})) this.insertLabelStmt.run(job.id, k, v);
        return true;
      })(),
    );
    if (created) return { record: this.read(job.id)!, created };
    const prior = this.byKeyStmt.get(job.owner, job.idempotencyKey) as JobRow | undefined;
    if (!prior) throw new Error(`job ${job.id} was neither inserted nor found by its idempotency key`);
    return { record: this.cache(toRecord(prior)), created: false };
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.read(id);
  }

  private read(id: string): JobRecord | undefined {
    const hit = this.records.get(id);
    if (hit) return hit;
    const row = this.byIdStmt.get(id) as JobRow | undefined;
    return row && this.cache(toRecord(row));
  }

  private cache(record: JobRecord): JobRecord {
    this.records.set(record.id, record);
    return record;
  }

  /** Drops what the caches hold of a job a write changed, or of every job. */
  forget(id?: string): void {
    if (id === undefined) this.records.clear();
    else this.records.delete(id);
  }

  async update(id: string, patch: JobPatch, expect?: UpdateGuard): Promise<JobRecord | undefined> {
    return writing(() => this.patch(id, patch, expect));
  }

  /**
   * The synchronous body of `update`, which the node store also runs inside
   * its own transactions (which call `forget()` if they roll back: the
   * record cached here would then be one that was never committed).
   * Throws SQLite's errors as they are.
   */
  patch(id: string, patch: JobPatch, expect?: UpdateGuard): JobRecord | undefined {
    const keys = patchKeys(patch);
    const ended = patch.endAttempt;
    if (keys.length === 0 && ended === undefined) {
      const record = this.read(id);
      return record && holds(record, expect) ? record : undefined;
    }
    const params: Record<string, unknown> = {
      id,
      expectState: expect?.state ?? null,
      fenceNode: expect?.fence?.node ?? null,
      fenceAttempt: expect?.fence?.attempt ?? null,
      fenceEpoch: expect?.fence?.epoch ?? null,
    };
    for (const k of keys) params[k] = toSql(k, patch[k]);
    if (ended) {
      Object.assign(params, {
        eaOutcome: ended.outcome,
        eaCause: ended.cause,
        eaRetried: String(ended.retried),
        eaReason: ended.reason,
        eaExitCode: ended.exitCode,
        eaFinishedAt: ended.finishedAt,
      });
    }
    const { changes } = this.updateStmt(keys, {
      endAttempt: ended !== undefined,
      expectState: expect?.state !== undefined,
      fenced: expect?.fence !== undefined,
      requeues: patch.state === 'queued',
    }).run(params);
    this.forget(id);
    return changes === 0 ? undefined : this.read(id);
  }

  /** Keys are JobPatch's own field names, mapped to columns by COLUMN, never a client's. */
  private updateStmt(
    keys: readonly ColumnField[],
    o: { endAttempt: boolean; expectState: boolean; fenced: boolean; requeues: boolean },
  ): Statement {
    const sets = [...keys.map((k) => `${COLUMN[k]} = @${k}`), ...(o.endAttempt ? [APPEND_ATTEMPT] : [])].join(', ');
    let sql = `UPDATE jobs SET ${sets} WHERE id = @id`;
    if (o.expectState) sql += ' AND state = @expectState';
    if (o.fenced) sql += ` AND node = @fenceNode AND attempt = @fenceAttempt AND node_epoch <= @fenceEpoch AND state NOT IN ${ENDED_SQL}`;
    if (o.requeues) sql += ' AND cancel_requested = 0';
    let stmt = this.updates.get(sql);
    if (!stmt) this.updates.set(sql, (stmt = this.db.prepare(sql)));
    return stmt;
  }

  async claim(id: string, node: { name: string; epoch: number }): Promise<JobRecord | undefined> {
    const { changes } = writing(() => this.claimStmt.run({ id, name: node.name, epoch: node.epoch }));
    this.forget(id);
    return changes === 0 ? undefined : this.read(id);
  }

  async queued(): Promise<JobRecord[]> {
    return this.fromRows(this.queuedStmt.all() as JobRow[]);
  }

  /** Records for rows, the cached ones reused (a cached record is the row's current one: every write drops it). */
  private fromRows(rows: readonly JobRow[]): JobRecord[] {
    return rows.map((r) => this.records.get(r.id) ?? this.cache(toRecord(r)));
  }

  async active(node: string): Promise<JobRecord[]> {
    return this.activeOf(node);
  }

  /** The node's jobs in pulling, starting or running (for the node store too). */
  activeOf(node: string): JobRecord[] {
    return (this.activeStmt.all(node) as JobRow[]).map(toRecord);
  }

  async activeByNode(): Promise<Map<string, number>> {
    return new Map((this.activeByNodeStmt.all() as { node: string; n: number }[]).map((r) => [r.node, r.n]));
  }

  async owned(node: string): Promise<OwnedJobs> {
    return ownedJobs((this.ownedStmt.all(node) as JobRow[]).map(toRecord));
  }

  /** Gives the node's claimed, unstarted jobs back to the queue; their ids. Throws SQLite's errors as they are. */
  unclaim(node: string): string[] {
    const ids = (this.unclaimStmt.all(node) as { id: string }[]).map((r) => r.id);
    if (ids.length > 0) this.forget();
    return ids;
  }

  async holdingGpus(): Promise<JobRecord[]> {
    return (this.holdingGpusStmt.all() as JobRow[]).map(toRecord);
  }

  async list(f: ListFilter): Promise<JobRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (f.owner !== undefined) {
      where.push('j.owner = ?');
      params.push(f.owner);
    }
    if (f.states && f.states.length > 0) {
      where.push(`j.state IN (${f.states.map(() => '?').join(',')})`);
      params.push(...f.states);
    }
    if (f.label) {
      where.push('EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = j.id AND l.key = ? AND l.value = ?)');
      params.push(f.label.key, f.label.value);
    }
    if (f.beforeSeq !== undefined) {
      where.push('j.seq < ?');
      params.push(f.beforeSeq);
    }
    const sql = `SELECT j.* FROM jobs j ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY j.seq DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...params, f.limit) as JobRow[]).map(toRecord);
  }

  async overlapping(fromIso: string, toIso: string): Promise<JobRecord[]> {
    const rows = this.overlappingStmt.all({ from: fromIso, to: toIso }) as JobRow[];
    return rows.sort((a, b) => a.seq - b.seq).map(toRecord);
  }

  /** One read transaction: a job pruned meanwhile is counted once, as a job or as pruned usage. */
  async usageSources(fromIso: string, toIso: string): Promise<{ records: JobRecord[]; pruned: UsageInterval[] }> {
    return this.db.transaction(() => {
      const pruned = this.prunedUsageStmt.all({ from: fromIso, to: toIso }) as (Omit<UsageInterval, 'gpus'> & { gpus: string })[];
      return {
        records: (this.overlappingStmt.all({ from: fromIso, to: toIso }) as JobRow[]).sort((a, b) => a.seq - b.seq).map(toRecord),
        pruned: pruned.map((r) => ({ ...r, gpus: JSON.parse(r.gpus) as string[] })),
      };
    })();
  }

  async countByStateAndOwner(): Promise<{ state: JobState; owner: string; count: number }[]> {
    return this.countStmt.all() as { state: JobState; owner: string; count: number }[];
  }

  async queueSummary(): Promise<{ length: number; oldestCreatedAt: string | null }> {
    return this.queueSummaryStmt.get() as { length: number; oldestCreatedAt: string | null };
  }

  async fillSettings(resolve: (spec: JobSpec) => RunSettings): Promise<number> {
    const filled = writing(() =>
      this.db.transaction(() => {
        const rows = this.unsetStmt.all() as { id: string; spec: string }[];
        for (const r of rows) this.setSettingsStmt.run(settingsText(resolve(JSON.parse(r.spec) as JobSpec)), r.id);
        return rows.length;
      })(),
    );
    if (filled > 0) this.forget();
    return filled;
  }
}

/** Whether a record meets an update's guard (for an update that changes nothing). */
function holds(record: JobRecord, expect: UpdateGuard | undefined): boolean {
  if (expect?.state !== undefined && record.state !== expect.state) return false;
  const fence = expect?.fence;
  if (
    fence &&
    (record.node !== fence.node || record.attempt !== fence.attempt || record.nodeEpoch > fence.epoch || isTerminal(record.state))
  ) {
    return false;
  }
  return true;
}
