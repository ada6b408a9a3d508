import Database from 'better-sqlite3';
import { Kysely, type Migration, type MigrationProvider, Migrator, SqliteDialect, sql } from 'kysely';

/**
 * The SQLite schema, as Kysely migrations. Names sort in the order they
 * apply; append only: never edit a migration that has shipped.
 *
 * Kysely's `kysely_migration` table is the record of what has been applied.
 * Gantry 0.1.0 kept its one migration's number in `PRAGMA user_version`
 * (1) instead; that pragma is left as it is now, and nothing reads it.
 */
type Db = Kysely<unknown>;

/** Runs DDL statements one by one (better-sqlite3 prepares one statement at a time). */
async function exec(db: Db, statements: readonly string[]): Promise<void> {
  for (const statement of statements) await sql.raw(statement).execute(db);
}

export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  /**
   * The schema of Gantry 0.1.0 (its MIGRATIONS[0]), made idempotent: on a
   * data dir that release made (user_version 1, no kysely tables) every
   * table and index exists, so this changes nothing and is recorded as
   * applied.
   */
  '0001_initial': {
    up: (db) =>
      exec(db, [
        `CREATE TABLE IF NOT EXISTS jobs (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          id TEXT NOT NULL UNIQUE,
          owner TEXT NOT NULL,
          name TEXT,
          state TEXT NOT NULL,
          priority INTEGER NOT NULL DEFAULT 0,
          spec TEXT NOT NULL,
          spec_hash TEXT NOT NULL,
          idempotency_key TEXT,
          request_id TEXT,
          container_id TEXT,
          gpus TEXT NOT NULL DEFAULT '[]',
          gpu_memory_mib INTEGER,
          exit_code INTEGER,
          reason TEXT,
          result TEXT,
          pull_status TEXT,
          pull_progress TEXT,
          cancel_requested INTEGER NOT NULL DEFAULT 0,
          created_at TEXT NOT NULL,
          started_at TEXT,
          finished_at TEXT,
          deadline_at TEXT
        )`,
        `CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(owner, idempotency_key) WHERE idempotency_key IS NOT NULL`,
        `CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, priority DESC, seq)`,
        `CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, seq)`,
        `CREATE TABLE IF NOT EXISTS job_labels (
          job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
          key TEXT NOT NULL,
          value TEXT NOT NULL,
          PRIMARY KEY (job_id, key)
        ) WITHOUT ROWID`,
        `CREATE INDEX IF NOT EXISTS job_labels_kv ON job_labels(key, value)`,
        `CREATE TABLE IF NOT EXISTS log_chunks (
          job_id TEXT NOT NULL,
          first_seq INTEGER NOT NULL,
          last_seq INTEGER NOT NULL,
          lines BLOB NOT NULL,
          PRIMARY KEY (job_id, first_seq)
        ) WITHOUT ROWID`,
        `CREATE TABLE IF NOT EXISTS log_state (
          job_id TEXT PRIMARY KEY,
          next_seq INTEGER NOT NULL DEFAULT 1,
          stdout_records INTEGER NOT NULL DEFAULT 0,
          stderr_records INTEGER NOT NULL DEFAULT 0,
          bytes INTEGER NOT NULL DEFAULT 0,
          truncated INTEGER NOT NULL DEFAULT 0,
          last_stdout TEXT,
          error TEXT,
          complete INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID`,
        `CREATE TABLE IF NOT EXISTS settings (
          key TEXT PRIMARY KEY,
          value TEXT NOT NULL
        ) WITHOUT ROWID`,
      ]),
  },

  /**
   * The node a job was taken by and its attempt, and the node registry.
   * Existing jobs get node NULL and attempt 1. Those of them already past
   * the queue ran on the one node a SQLite file has ever had, whose name
   * this file never knew: the node the store is opened for, or else the
   * first to register, takes the unfinished ones (nodes.ts, ADOPT); finished
   * ones keep NULL.
   */
  '0002_fleet': {
    up: (db) =>
      exec(db, [
        `ALTER TABLE jobs ADD COLUMN node TEXT`,
        `ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1`,
        `CREATE INDEX jobs_node ON jobs(node, state)`,
        `CREATE TABLE nodes (
          name TEXT PRIMARY KEY,
          labels TEXT NOT NULL DEFAULT '{}',
          gpus TEXT NOT NULL DEFAULT '[]',
          version TEXT NOT NULL,
          lease_seconds INTEGER NOT NULL,
          epoch INTEGER NOT NULL,
          state TEXT NOT NULL,
          drained INTEGER NOT NULL DEFAULT 0,
          started_at TEXT NOT NULL,
          heartbeat_at TEXT NOT NULL
        ) WITHOUT ROWID`,
      ]),
  },

  /**
   * The audit trail (store.ts, AuditStore). AUTOINCREMENT: a `seq` is never
   * given twice, even once retention deleted the newest rows, so a list
   * cursor keeps its place. The trigger makes a record unchangeable whatever
   * writes the file; retention's DELETE is the only removal.
   */
  '0003_audit': {
    up: (db) =>
      exec(db, [
        `CREATE TABLE audit (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          at TEXT NOT NULL,
          node TEXT NOT NULL,
          actor TEXT,
          action TEXT NOT NULL,
          target TEXT,
          outcome TEXT NOT NULL,
          status INTEGER,
          problem_type TEXT,
          request_id TEXT,
          detail TEXT NOT NULL DEFAULT '{}'
        )`,
        `CREATE INDEX audit_at ON audit(at)`,
        `CREATE INDEX audit_actor ON audit(actor, seq)`,
        `CREATE INDEX audit_target ON audit(target, seq)`,
        `CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END`,
      ]),
  },

  /**
   * Retries: the attempts of a job that ended (JSON, oldest first, written
   * with the job's row in one UPDATE) and the earliest time its current
   * attempt may start. Existing jobs get none and NULL.
   */
  '0004_retries': {
    up: (db) =>
      exec(db, [`ALTER TABLE jobs ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]'`, `ALTER TABLE jobs ADD COLUMN not_before TEXT`]),
  },

  /**
   * Usage accounting reads the jobs not finished before a window's start
   * (jobs.overlapping), and log retention those finished before a cutoff:
   * both a range of finished_at, whose NULLs are the unfinished jobs.
   */
  '0005_jobs_finished': {
    up: (db) => exec(db, [`CREATE INDEX jobs_finished ON jobs(finished_at)`]),
  },

  /**
   * GPU telemetry: the summary of what the sampler measured of the job's
   * last attempt (JSON, written by the run's node with its fence). Existing
   * jobs get NULL: nothing was measured.
   */
  '0006_gpu_telemetry': {
    up: (db) => exec(db, [`ALTER TABLE jobs ADD COLUMN gpu_telemetry TEXT`]),
  },

  /**
   * A job's run settings (JSON, model/run-settings.ts), resolved at submit.
   * Existing jobs get NULL; the app gives the unended ones theirs when it
   * starts (JobStore.fillSettings).
   */
  '0007_run_settings': {
    up: (db) => exec(db, [`ALTER TABLE jobs ADD COLUMN settings TEXT`]),
  },

  /**
   * The epoch of the node's process that holds a job's run (store.ts:
   * Fence). Existing jobs get 0, which any process of their node may write
   * over; the next start's adoption stamps its own.
   */
  '0008_node_epoch': {
    up: (db) => exec(db, [`ALTER TABLE jobs ADD COLUMN node_epoch INTEGER NOT NULL DEFAULT 0`]),
  },

  /**
   * History that costs nothing to keep as it grows:
   * - usage_intervals: the GPU time of jobs retention pruned, one row per
   *   attempt that held GPUs (store.ts, UsageInterval), so /v1/usage stays
   *   right for windows that cover them.
   * - job_counts: jobs by owner, state and whether they wait untaken in
   *   the queue, kept by triggers on every write of jobs, for the metrics;
   *   filled from the jobs already there.
   * - jobs_waiting: the oldest waiting job without reading the queue.
   */
  '0009_scale_history': {
    up: (db) =>
      exec(db, [
        `CREATE TABLE usage_intervals (
          job_id TEXT NOT NULL,
          attempt INTEGER NOT NULL,
          owner TEXT NOT NULL,
          gpus TEXT NOT NULL,
          started_at TEXT NOT NULL,
          ended_at TEXT NOT NULL,
          PRIMARY KEY (job_id, attempt)
        ) WITHOUT ROWID`,
        `CREATE INDEX usage_intervals_ended ON usage_intervals(ended_at)`,
        `CREATE TABLE job_counts (
          owner TEXT NOT NULL,
          state TEXT NOT NULL,
          waiting INTEGER NOT NULL,
          count INTEGER NOT NULL,
          PRIMARY KEY (owner, state, waiting)
        ) WITHOUT ROWID`,
        `CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
          INSERT OR IGNORE INTO job_counts VALUES (NEW.owner, NEW.state, NEW.state = 'queued' AND NEW.node IS NULL, 0);
          UPDATE job_counts SET count = count + 1
          WHERE owner = NEW.owner AND state = NEW.state AND waiting = (NEW.state = 'queued' AND NEW.node IS NULL);
        END`,
        `CREATE TRIGGER job_counts_update AFTER UPDATE OF owner, state, node ON jobs
        WHEN OLD.owner IS NOT NEW.owner OR OLD.state IS NOT NEW.state OR (OLD.node IS NULL) IS NOT (NEW.node IS NULL) BEGIN
          UPDATE job_counts SET count = count - 1
          WHERE owner = OLD.owner AND state = OLD.state AND waiting = (OLD.state = 'queued' AND OLD.node IS NULL);
          INSERT OR IGNORE INTO job_counts VALUES (NEW.owner, NEW.state, NEW.state = 'queued' AND NEW.node IS NULL, 0);
          UPDATE job_counts SET count = count + 1
          WHERE owner = NEW.owner AND state = NEW.state AND waiting = (NEW.state = 'queued' AND NEW.node IS NULL);
        END`,
        `CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
          UPDATE job_counts SET count = count - 1
          WHERE owner = OLD.owner AND state = OLD.state AND waiting = (OLD.state = 'queued' AND OLD.node IS NULL);
        END`,
        `INSERT INTO job_counts SELECT owner, state, state = 'queued' AND node IS NULL, COUNT(*) FROM jobs GROUP BY 1, 2, 3`,
        `CREATE INDEX jobs_waiting ON jobs(created_at) WHERE state = 'queued' AND node IS NULL`,
      ]),
  },

  /** The JSON document a job wrote to its result file (JSON text; NULL for none). */
  '0011_airflow_result_document': {
    up: (db) => exec(db, [`ALTER TABLE jobs ADD COLUMN result_document TEXT`]),
  },

  /** The client's X-Request-Id kept beside Gantry's own request id, as a claim (model/audit.ts). */
  '0012_harden_audit_client_request_id': {
    up: (db) => exec(db, [`ALTER TABLE audit ADD COLUMN client_request_id TEXT`]),
  },
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/**
 * Brings the database file up to the latest schema.
 *
 * The migrator gets a better-sqlite3 connection of its own, closed when it
 * is done, rather than the store's: Kysely's SqliteDriver.destroy() calls
 * `close()` on the database it was given (onCreateConnection cannot stop
 * that), and the store's statements are prepared only once the schema is
 * final, so they never see a half-migrated one.
 *
 * SQLite's DDL is transactional but Kysely's SqliteAdapter says it is not,
 * so the Migrator would run each migration, and record it, outside any
 * transaction: a crash between two statements of one migration would leave
 * a file no later start could migrate (a column added, its migration not
 * recorded). The whole run is therefore one `BEGIN IMMEDIATE` transaction
 * on the migrator's connection: every pending migration and its record, or
 * nothing. IMMEDIATE takes the write lock before Kysely reads what was
 * applied, so a second process opening the same file waits (busy_timeout)
 * and then finds nothing left to do.
 */
export async function migrateToLatest(file: string, configure: (db: Database.Database) => void): Promise<void> {
  const conn = new Database(file);
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: conn }) });
  try {
    configure(conn);
    conn.exec('BEGIN IMMEDIATE');
    const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
    if (error !== undefined) {
      if (conn.inTransaction) conn.exec('ROLLBACK');
      const failed = results?.find((r) => r.status === 'Error')?.migrationName;
      const what = failed ? `schema migration ${failed} failed` : 'its schema migrations cannot run';
      const detail = error instanceof Error ? error.message : String(error);
      throw new Error(`cannot open the store ${file}: ${what} (nothing was changed): ${detail}`, { cause: error });
    }
    conn.exec('COMMIT');
  } catch (err) {
    if (conn.open && conn.inTransaction) conn.exec('ROLLBACK');
    throw err;
  } finally {
    // Closes `conn` (and only it), once Kysely has used it; Kysely leaves
    // a database it never ran a query on open, so close that one here.
    await db.destroy();
    if (conn.open) conn.close();
  }
}
