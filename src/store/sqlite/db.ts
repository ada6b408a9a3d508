import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/**
 * Ordered schema migrations; the index + 1 is the schema version stored in
 * `PRAGMA user_version`. Append only: never edit a migration that has shipped.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE jobs (
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
  );
  CREATE UNIQUE INDEX jobs_idempotency ON jobs(owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
  CREATE INDEX jobs_state ON jobs(state, priority DESC, seq);
  CREATE INDEX jobs_owner ON jobs(owner, seq);
  CREATE TABLE job_labels (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
  ) WITHOUT ROWID;
  CREATE INDEX job_labels_kv ON job_labels(key, value);
  CREATE TABLE log_chunks (
    job_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    lines BLOB NOT NULL,
    PRIMARY KEY (job_id, first_seq)
  ) WITHOUT ROWID;
  CREATE TABLE log_state (
    job_id TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL DEFAULT 1,
    stdout_records INTEGER NOT NULL DEFAULT 0,
    stderr_records INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    truncated INTEGER NOT NULL DEFAULT 0,
    last_stdout TEXT,
    error TEXT,
    complete INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
];

/**
 * Opens (creating if needed) the store under dataDir. WAL with
 * synchronous=NORMAL survives a crash of the Gantry process (kill -9): a
 * committed transaction is in the WAL file before commit returns. Only a
 * power loss can drop the last transactions, which reconcile then repairs
 * from Docker's own state.
 */
export function openDb(dataDir: string, fileName = 'gantry.db'): Db {
  fs.mkdirSync(dataDir, { recursive: true });
  const db = new Database(path.join(dataDir, fileName));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
