import type { Store } from '../store.js';
import { openDb } from './db.js';
import { writing } from './errors.js';
import { SqliteJobStore } from './jobs.js';
import { SqliteLogStore } from './logs.js';
import { SqliteSettingsStore } from './settings.js';

/** The embedded store: one SQLite file under the data dir. */
export function openSqliteStore(dataDir: string): Store {
  const db = openDb(dataDir);
  const probe = db.prepare(`INSERT INTO settings(key, value) VALUES ('readyz', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
  return {
    jobs: new SqliteJobStore(db),
    logs: new SqliteLogStore(db),
    settings: new SqliteSettingsStore(db),
    async probeWritable() {
      writing(() => probe.run(new Date().toISOString()));
    },
    async close() {
      db.close();
    },
  };
}
