import type { Statement } from 'better-sqlite3';
import { ENDED_SQL, type JobRow, toRecord } from '../job-row.js';
import type { JobRecord, RetentionStore, UsageInterval } from '../store.js';
import type { Db } from './db.js';
import { writing } from './errors.js';
import type { SqliteJobStore } from './jobs.js';

/** The settings key of the point log retention reached: the (finished_at, seq) of the last job whose logs it deleted. */
const LOGS_MARK = 'retention:logs';

/**
 * Retention in SQLite, a batch per call in one transaction. This process
 * alone writes the file, so a batch never finds another sweep running. Log deletion moves
 * a mark kept in `settings`, so a job's logs are looked for once; job
 * pruning takes the oldest finished jobs, which are gone once pruned.
 */
export class SqliteRetentionStore implements RetentionStore {
  private readonly markStmt: Statement;
  private readonly setMarkStmt: Statement;
  private readonly logsDueStmt: Statement;
  private readonly jobsDueStmt: Statement;
  private readonly keepUsageStmt: Statement;
  private readonly deleteChunksStmt: Statement;
  private readonly deleteStateStmt: Statement;
  private readonly deleteJobStmt: Statement;

  constructor(
    private readonly db: Db,
    private readonly jobs: SqliteJobStore,
  ) {
    this.markStmt = db.prepare(`SELECT value FROM settings WHERE key = ?`);
    this.setMarkStmt = db.prepare(`INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
    // From the mark on, along the jobs_finished index; the seq breaks ties of one finished_at.
    this.logsDueStmt = db.prepare(
      `SELECT id, finished_at, seq FROM jobs
       WHERE finished_at < @cutoff AND finished_at >= @at AND (finished_at > @at OR seq > @seq)
       ORDER BY finished_at, seq LIMIT @limit`,
    );
    this.jobsDueStmt = db.prepare(`SELECT * FROM jobs WHERE finished_at < ? AND state IN ${ENDED_SQL} ORDER BY finished_at LIMIT ?`);
    this.keepUsageStmt = db.prepare(
      `INSERT OR IGNORE INTO usage_intervals (job_id, owner, attempt, gpus, started_at, ended_at)
       VALUES (@jobId, @owner, @attempt, @gpus, @startedAt, @endedAt)`,
    );
    this.deleteChunksStmt = db.prepare(`DELETE FROM log_chunks WHERE job_id = ?`);
    this.deleteStateStmt = db.prepare(`DELETE FROM log_state WHERE job_id = ?`);
    // Labels go with the row (ON DELETE CASCADE).
    this.deleteJobStmt = db.prepare(`DELETE FROM jobs WHERE id = ?`);
  }

  async cutoff(days: number): Promise<string> {
    return new Date(Date.now() - days * 86_400_000).toISOString();
  }

  async pruneLogs(cutoffIso: string, limit: number): Promise<number> {
    return writing(() =>
      this.db.transaction(() => {
        const mark = this.markStmt.get(LOGS_MARK) as { value: string } | undefined;
        const from = mark ? (JSON.parse(mark.value) as { at: string; seq: number }) : { at: '', seq: 0 };
        const rows = this.logsDueStmt.all({ cutoff: cutoffIso, at: from.at, seq: from.seq, limit }) as {
          id: string;
          finished_at: string;
          seq: number;
        }[];
        const last = rows.at(-1);
        if (!last) return 0;
        for (const r of rows) this.deleteLogs(r.id);
        this.setMarkStmt.run(LOGS_MARK, JSON.stringify({ at: last.finished_at, seq: last.seq }));
        return rows.length;
      })(),
    );
  }

  async pruneJobs(cutoffIso: string, limit: number, usage: (record: JobRecord) => UsageInterval[]): Promise<number> {
    const ids = writing(() =>
      this.db.transaction(() => {
        const rows = this.jobsDueStmt.all(cutoffIso, limit) as JobRow[];
        for (const u of rows.map(toRecord).flatMap(usage)) this.keepUsageStmt.run({ ...u, gpus: JSON.stringify(u.gpus) });
        for (const r of rows) {
          this.deleteLogs(r.id);
          this.deleteJobStmt.run(r.id);
        }
        return rows.map((r) => r.id);
      })(),
    );
    for (const id of ids) this.jobs.forget(id);
    return ids.length;
  }

  /** Counts are one row per owner, state and waiting, updated in place: nothing to compact. */
  async compactCounts(): Promise<void> {}

  private deleteLogs(id: string): void {
    this.deleteChunksStmt.run(id);
    this.deleteStateStmt.run(id);
  }
}
