import type { Store } from '../store.js';
import { PgAuditStore } from './audit.js';
import { PgChangeFeed } from './changes.js';
import { createPool, type WarnLog, write } from './db.js';
import { PgDeciderStore } from './decider.js';
import { storeError } from './errors.js';
import { PgJobStore } from './jobs.js';
import { LeaseLink } from './lease-link.js';
import { LOG_ANNOUNCE_MS, LogAnnouncer } from './log-announcer.js';
import { PgLogStore } from './logs.js';
import { migrate } from './migrations.js';
import { PgNodeStore } from './nodes.js';
import { RecordCache } from './record-cache.js';
import { PgRetentionStore } from './retention.js';
import { PgSettingsStore } from './settings.js';

const PROBE = `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;

/** The lease a store opened without one is sized for (GANTRY_NODE_LEASE_SECONDS's default). */
const DEFAULT_LEASE_SECONDS = 30;

/**
 * The store a fleet of nodes shares: one PostgreSQL database. Opening it
 * migrates the schema (once, whichever nodes start together) and starts
 * listening for the other nodes' changes; `node` is this node's name, which
 * its own changes carry so that its feed leaves them out. The node's lease
 * sizes the connections' timeouts (db.ts), and renewals have a connection
 * of their own (lease-link.ts).
 */
export async function openPostgresStore(o: {
  url: string;
  node: string;
  leaseSeconds?: number;
  log?: WarnLog;
  /** How often log growth is announced to the other nodes (log-announcer.ts). */
  logAnnounceMs?: number;
  /** How often the change feed checks its connection, moving its mark (changes.ts). */
  feedCheckMs?: number;
  /** Most pooled connections (db.ts, createPool). */
  poolMax?: number;
  /**
   * Where the connections that keep a session go: the migrator (its
   * advisory lock), the change feed (LISTEN) and the lease's renewals.
   * Unset: `url`. Past a pooler in transaction mode, `url` is the pooler
   * and this PostgreSQL itself or a session-mode pool.
   */
  sessionUrl?: string | undefined;
}): Promise<Store> {
  const sessionUrl = o.sessionUrl ?? o.url;
  try {
    await migrate(sessionUrl, o.node);
  } catch (err) {
    throw storeError(err);
  }
  const cache = new RecordCache();
  const changes = new PgChangeFeed(sessionUrl, o.node, cache, o.log, o.feedCheckMs);
  try {
    await changes.start();
  } catch (err) {
    await changes.close();
    throw storeError(err);
  }
  const leaseSeconds = o.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
  const pool = createPool({ url: o.url, node: o.node, leaseSeconds, log: o.log, max: o.poolMax });
  const lease = new LeaseLink(sessionUrl, o.node, leaseSeconds);
  const announcer = new LogAnnouncer(pool, o.node, o.logAnnounceMs ?? LOG_ANNOUNCE_MS, o.log);
  let closing: Promise<void> | undefined;
  return {
    jobs: new PgJobStore(pool, o.node, cache),
    logs: new PgLogStore(pool, announcer),
    settings: new PgSettingsStore(pool),
    nodes: new PgNodeStore(pool, o.node, lease, cache),
    audit: new PgAuditStore(pool),
    retention: new PgRetentionStore(pool, cache),
    changes,
    relayableChanges: changes,
    decider: new PgDeciderStore(pool, o.node),
    async probeWritable() {
      await write(pool, { name: 'gantry_probe', text: PROBE, values: [`readyz:${o.node}`, new Date().toISOString()] });
    },
    close() {
      closing ??= Promise.all([changes.close(), announcer.flush()]).then(() => {
        lease.close();
        return pool.end();
      });
      return closing;
    },
  };
}
