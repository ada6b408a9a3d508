import type { Statement } from 'better-sqlite3';
import type { Db } from './db.js';
import { LRUCache } from 'lru-cache';
import type { Job, JobSpec } from '../jobs/schema.js';
import type { JobState } from '../jobs/states.js';

/** A job row as stored; the API shape is derived from it by toJob(). */
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
  gpu_memory_mib: number | null;
  exit_code: number | null;
  reason: string | null;
  result: string | null;
  pull_status: string | null;
  pull_progress: string | null;
  cancel_requested: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  deadline_at: string | null;
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

export type JobPatch = Partial<
  Pick<
    JobRow,
    | 'state'
    | 'container_id'
    | 'gpus'
    | 'gpu_memory_mib'
    | 'exit_code'
    | 'reason'
    | 'result'
    | 'pull_status'
    | 'pull_progress'
    | 'cancel_requested'
    | 'started_at'
    | 'finished_at'
    | 'deadline_at'
  >
>;

export interface ListFilter {
  owner?: string | undefined;
  states?: JobState[] | undefined;
  label?: { key: string; value: string } | undefined;
  beforeSeq?: number | undefined;
  limit: number;
}

/** How many job rows JobsRepo keeps in memory (about 1 KB each). */
const ROW_CACHE_MAX = 4096;

/** All SQL about jobs lives here; statements are prepared once. */
export class JobsRepo {
  /**
   * lru-cache rather than a Map re-inserted on every hit: a hit re-links
   * preallocated slots instead of growing and rehashing the Map's table, whose
   * discarded copies were the largest garbage a status poll left for the
   * major GC (sampling heap profile, docs/performance.md).
   */
  private readonly rows = new LRUCache<string, JobRow>({ max: ROW_CACHE_MAX });
  /** queuePositions()'s answer until the next write to `jobs`. */
  private positions: ReadonlyMap<string, number> | null = null;
  private readonly insertStmt: Statement;
  private readonly insertLabelStmt: Statement;
  private readonly byIdStmt: Statement;
  private readonly byKeyStmt: Statement;
  private readonly queuedStmt: Statement;
  private readonly activeStmt: Statement;
  private readonly updates = new Map<string, Statement>();

  constructor(private readonly db: Db) {
    this.insertStmt = db.prepare(
      `INSERT INTO jobs (id, owner, name, state, priority, spec, spec_hash, idempotency_key, request_id, created_at)
       VALUES (@id, @owner, @name, 'queued', @priority, @spec, @specHash, @idempotencyKey, @requestId, @createdAt)`,
    );
    this.insertLabelStmt = db.prepare(`INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)`);
    this.byIdStmt = db.prepare(`SELECT * FROM jobs WHERE id = ?`);
    this.byKeyStmt = db.prepare(`SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?`);
    this.queuedStmt = db.prepare(`SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, seq ASC`);
    this.activeStmt = db.prepare(`SELECT * FROM jobs WHERE state IN ('pulling', 'starting', 'running')`);
  }

  /** Inserts the job and its labels in one transaction. */
  insert(job: NewJob): JobRow {
    this.db.transaction(() => {
      this.insertStmt.run({
        id: job.id,
        owner: job.owner,
        name: job.spec.name ?? null,
        priority: job.spec.priority ?? 0,
        spec: JSON.stringify(job.spec),
        specHash: job.specHash,
        idempotencyKey: job.idempotencyKey,
        requestId: job.requestId,
        createdAt: job.createdAt,
      });
      this.positions = null;
      for (const [k, v] of Object.entries(job.spec.labels ?? {})) this.insertLabelStmt.run(job.id, k, v);
    })();
    return this.get(job.id)!;
  }

  /**
   * A job by id. Rows are kept in a small write-through cache (every write
   * to `jobs` goes through this class, which drops the entry), because a
   * status poll is mostly this read and SQLite's per-read locking of the WAL
   * (two fcntl calls and an fstat per statement) costs more than the rest of
   * the lookup (bench: docs/performance.md). Inside a transaction the cache
   * is bypassed, so a rollback can never leave it ahead of the store. Cached
   * rows are frozen: callers copy, never mutate.
   */
  get(id: string): JobRow | undefined {
    const inTx = this.db.inTransaction;
    if (!inTx) {
      const hit = this.rows.get(id);
      if (hit) return hit;
    }
    const row = this.byIdStmt.get(id) as JobRow | undefined;
    if (row && !inTx) {
      this.rows.set(id, Object.freeze(row));
    }
    return row;
  }

  getByIdempotencyKey(owner: string, key: string): JobRow | undefined {
    return this.byKeyStmt.get(owner, key) as JobRow | undefined;
  }

  /** Queued jobs in scheduling order: higher priority first, then FIFO. */
  queued(): JobRow[] {
    return this.queuedStmt.all() as JobRow[];
  }

  /**
   * Each queued job's place in the queue (0 is next). Every status poll of a
   * queued job reads it, and reading the queue from SQLite costs ~1 ms with
   * 200 jobs queued (bench: /wait polls, docs/performance.md), so the answer
   * is kept until the next write to `jobs` (all of which go through this
   * class). Inside a transaction it is computed afresh and not kept, as rows are.
   */
  queuePositions(): ReadonlyMap<string, number> {
    if (this.positions && !this.db.inTransaction) return this.positions;
    const positions = new Map(this.queued().map((r, i) => [r.id, i]));
    if (!this.db.inTransaction) this.positions = positions;
    return positions;
  }

  /** Jobs that hold (or are about to hold) a container. */
  active(): JobRow[] {
    return this.activeStmt.all() as JobRow[];
  }

  update(id: string, patch: JobPatch): JobRow {
    const keys = Object.keys(patch) as (keyof JobPatch)[];
    if (keys.length > 0) {
      this.updateStmt(keys).run({ ...patch, id });
      this.rows.delete(id);
      this.positions = null;
    }
    return this.get(id)!;
  }

  /**
   * The UPDATE for a set of columns, prepared once: a job goes through a
   * handful of updates, always with the same few column sets, and preparing
   * each time added 20-27 µs to a 36-41 µs update (micro-benchmark on this
   * machine). Keys are JobPatch's own column names, never a client's.
   */
  private updateStmt(keys: readonly (keyof JobPatch)[]): Statement {
    const sets = keys.map((k) => `${k} = @${k}`).join(', ');
    let stmt = this.updates.get(sets);
    if (!stmt) this.updates.set(sets, (stmt = this.db.prepare(`UPDATE jobs SET ${sets} WHERE id = @id`)));
    return stmt;
  }

  /** Newest first; `beforeSeq` is the cursor from the previous page. */
  list(f: ListFilter): JobRow[] {
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
    const sql = `SELECT j.* FROM jobs j ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY j.seq DESC LIMIT ?`;
    return this.db.prepare(sql).all(...params, f.limit) as JobRow[];
  }

  /** Finished jobs older than the cutoff, for log retention. */
  finishedBefore(cutoffIso: string): string[] {
    return (
      this.db
        .prepare(`SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?`)
        .all(cutoffIso) as { id: string }[]
    ).map((r) => r.id);
  }
}

/** The API view of a stored job. `position` is filled in by the scheduler. */
export function toJob(row: JobRow, position: number | null): Job {
  const spec = JSON.parse(row.spec) as JobSpec;
  return {
    id: row.id,
    name: row.name,
    owner: row.owner,
    state: row.state,
    position,
    exitCode: row.exit_code,
    reason: row.reason,
    result: row.result,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    gpus: JSON.parse(row.gpus) as string[],
    pull: row.pull_status === null ? null : { status: row.pull_status, progress: row.pull_progress },
    labels: spec.labels ?? {},
    requestId: row.request_id,
    spec,
  };
}
