import type { Statement } from 'better-sqlite3';
import type { SettingsStore } from '../store.js';
import type { Db } from './db.js';
import { writing } from './errors.js';

/** Small persistent key/value settings (e.g. the generated admin token's hash). */
export class SqliteSettingsStore implements SettingsStore {
  private readonly getStmt: Statement;
  private readonly setStmt: Statement;

  constructor(db: Db) {
    this.getStmt = db.prepare(`SELECT value FROM settings WHERE key = ?`);
    this.setStmt = db.prepare(`INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
  }

  async get(key: string): Promise<string | undefined> {
    return (this.getStmt.get(key) as { value: string } | undefined)?.value;
  }

  async set(key: string, value: string): Promise<void> {
    writing(() => this.setStmt.run(key, value));
  }
}
