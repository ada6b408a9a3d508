import type { Statement } from 'better-sqlite3';
import type { Db } from './db.js';

/** Small persistent key/value settings (e.g. the generated admin token's hash). */
export class Settings {
  private readonly getStmt: Statement;
  private readonly setStmt: Statement;

  constructor(db: Db) {
    this.getStmt = db.prepare(`SELECT value FROM settings WHERE key = ?`);
    this.setStmt = db.prepare(
      `INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
    );
  }

  get(key: string): string | undefined {
    return (this.getStmt.get(key) as { value: string } | undefined)?.value;
  }

  set(key: string, value: string): void {
    this.setStmt.run(key, value);
  }
}
