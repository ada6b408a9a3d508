import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { migrateToLatest } from './migrations.js';

export type Db = Database.Database;

/**
 * WAL with synchronous=NORMAL survives a crash of the Gantry process
 * (kill -9): a committed transaction is in the WAL file before commit
 * returns. Only a power loss can drop the last transactions, which
 * reconcile then repairs from Docker's own state.
 */
function configure(db: Db): void {
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
}

/**
 * Opens (creating if needed) the store under dataDir, its schema migrated
 * to the latest (migrations.ts) before the connection the store uses is
 * opened.
 */
export async function openDb(dataDir: string, fileName = 'gantry.db'): Promise<Db> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, fileName);
  await migrateToLatest(file, configure);
  const db = new Database(file);
  configure(db);
  return db;
}
