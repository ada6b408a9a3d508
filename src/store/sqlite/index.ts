import type { Store } from '../store.js';
import { SqliteAuditStore } from './audit.js';
import { openDb } from './db.js';
import { writing } from './errors.js';
import { SqliteJobStore } from './jobs.js';
import { SqliteLogStore } from './logs.js';
import { adoptLegacyJobs, SqliteNodeStore } from './nodes.js';
import { SqliteRetentionStore } from './retention.js';
import { SqliteSettingsStore } from './settings.js';

/**
 * The embedded store: one SQLite file under the data dir, its schema
 * migrated on open. This process alone writes it, so it has no change feed.
 * `node`, this process's node name, takes the jobs Gantry 0.1.0 left
 * unfinished (nodes.ts, ADOPT); without it (tests, tools) the first node
 * to register does.
 */
export async function openSqliteStore(dataDir: string, node?: string): Promise<Store> {
  const db = await openDb(dataDir);
  if (node !== undefined) writing(() => adoptLegacyJobs(db, node));
  const probe = db.prepare(`INSERT INTO settings(key, value) VALUES ('readyz', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
  const jobs = new SqliteJobStore(db);
  return {
    jobs,
    logs: new SqliteLogStore(db),
    settings: new SqliteSettingsStore(db),
    nodes: new SqliteNodeStore(db, jobs),
    audit: new SqliteAuditStore(db),
    retention: new SqliteRetentionStore(db, jobs),
    changes: null,
    decider: null,
    relayableChanges: null,
    async probeWritable() {
      writing(() => probe.run(new Date().toISOString()));
    },
    async close() {
      db.close();
    },
  };
}
