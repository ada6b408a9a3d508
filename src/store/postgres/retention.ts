import type pg from 'pg';
import { ENDED_SQL, JOB_COLUMNS, type JobRow, toRecord } from '../job-row.js';
import type { JobRecord, RetentionStore, UsageInterval } from '../store.js';
import { read, transaction, write } from './db.js';
import { FOLD_COUNTS } from './jobs.js';
import type { RecordCache } from './record-cache.js';

/**
 * The transaction-level advisory lock each retention batch takes, fleet-wide
 * (a constant no other lock of the database uses). A transaction lock, not
 * a session one: it ends with its transaction on any connection, a
 * pooler's too, so it can never be left held.
 */
export const SWEEP_LOCK = '7302861001';
/** The settings key of the point log retention reached: the (finished_at, seq) of the last job whose logs it deleted. */
const LOGS_MARK = 'retention:logs';

// From the mark on, along the jobs_finished index; the seq breaks ties of one finished_at.
const LOGS_DUE = `
  SELECT id, finished_at, seq FROM jobs
  WHERE finished_at < $1 AND finished_at >= $2 AND (finished_at > $2 OR seq > $3)
  ORDER BY finished_at, seq LIMIT $4`;
const JOBS_DUE = `SELECT ${JOB_COLUMNS} FROM jobs WHERE finished_at < $1 AND state IN ${ENDED_SQL} ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED`;
const LOCK = `SELECT pg_try_advisory_xact_lock(${SWEEP_LOCK}) AS locked`;
// The ISO form every time column holds (UTC, milliseconds), from the server's clock.
const CUTOFF = `SELECT to_char((now() - $1::float8 * interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS cutoff`;
const KEEP_USAGE = `
  INSERT INTO usage_intervals (job_id, owner, attempt, gpus, started_at, ended_at)
  SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[])
  ON CONFLICT DO NOTHING`;

async function deleteLogs(c: pg.PoolClient, ids: string[]): Promise<void> {
  await c.query({ name: 'gantry_retention_chunks', text: `DELETE FROM log_chunks WHERE job_id = ANY($1::text[])`, values: [ids] });
  await c.query({ name: 'gantry_retention_state', text: `DELETE FROM log_state WHERE job_id = ANY($1::text[])`, values: [ids] });
}

/**
 * Retention in PostgreSQL: each call deletes one batch in one transaction
 * that first tries the sweep lock, never waiting for it; a node that finds
 * it held leaves the sweep to the node holding it. Log deletion moves a
 * mark kept in `settings`, so a job's logs are looked for once; job pruning
 * takes the oldest finished jobs, which are gone once pruned. Cutoffs come
 * from the database's clock, the one every node shares.
 */
export class PgRetentionStore implements RetentionStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly cache: RecordCache,
  ) {}

  async cutoff(days: number): Promise<string> {
    const rows = await read<{ cutoff: string }>(this.pool, { name: 'gantry_retention_cutoff', text: CUTOFF, values: [days] });
    return rows[0]!.cutoff;
  }

  async pruneLogs(cutoffIso: string, limit: number): Promise<number | null> {
    return this.batch(async (c) => {
      const mark = await c.query<{ value: string }>(`SELECT value FROM settings WHERE key = $1 FOR UPDATE`, [LOGS_MARK]);
      const from = mark.rows[0] ? (JSON.parse(mark.rows[0].value) as { at: string; seq: number }) : { at: '', seq: 0 };
      const { rows } = await c.query<{ id: string; finished_at: string; seq: number }>({
        name: 'gantry_retention_logs_due',
        text: LOGS_DUE,
        values: [cutoffIso, from.at, from.seq, limit],
      });
      const last = rows.at(-1);
      if (!last) return 0;
      await deleteLogs(
        c,
        rows.map((r) => r.id),
      );
      await c.query(`INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [
        LOGS_MARK,
        JSON.stringify({ at: last.finished_at, seq: last.seq }),
      ]);
      return rows.length;
    });
  }

  async pruneJobs(cutoffIso: string, limit: number, usage: (record: JobRecord) => UsageInterval[]): Promise<number | null> {
    const ids = await this.batch(async (c) => {
      const { rows } = await c.query<JobRow>({ name: 'gantry_retention_jobs_due', text: JOBS_DUE, values: [cutoffIso, limit] });
      if (rows.length === 0) return [];
      const kept = rows.map(toRecord).flatMap(usage);
      if (kept.length > 0) {
        await c.query({
          name: 'gantry_retention_keep_usage',
          text: KEEP_USAGE,
          values: [
            kept.map((u) => u.jobId),
            kept.map((u) => u.owner),
            kept.map((u) => u.attempt),
            kept.map((u) => JSON.stringify(u.gpus)),
            kept.map((u) => u.startedAt),
            kept.map((u) => u.endedAt),
          ],
        });
      }
      const ids = rows.map((r) => r.id);
      await deleteLogs(c, ids);
      // Labels go with the row (ON DELETE CASCADE).
      await c.query({ name: 'gantry_retention_jobs', text: `DELETE FROM jobs WHERE id = ANY($1::text[])`, values: [ids] });
      return ids;
    });
    if (ids === null) return null;
    for (const id of ids) this.cache.drop(id);
    return ids.length;
  }

  async compactCounts(): Promise<void> {
    await write(this.pool, { name: 'gantry_jobs_fold_counts', text: FOLD_COUNTS });
  }

  /** fn in a transaction holding the sweep lock; null, having done nothing, when another holds it. */
  private async batch<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T | null> {
    return transaction(this.pool, async (c) => {
      const { rows } = await c.query<{ locked: boolean }>({ name: 'gantry_retention_lock', text: LOCK });
      return rows[0]?.locked === true ? fn(c) : null;
    });
  }
}
