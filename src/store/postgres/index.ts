import type { Store } from '../store.js';
import { PgAuditStore } from './audit.js';
import { PgChangeFeed } from './changes.js';
import { createPool, type WarnLog, write } from './db.js';
import { PgDeciderStore } from './decider.js';
import { storeError } from './errors.js';
import { PgJobStore } from './jobs.js';
import { LeaseLink } from './lease-link.js';
import { PgLogStore } from './logs.js';
import { migrate } from './migrations.js';
import { PgNodeStore } from './nodes.js';
import { RecordCache } from './record-cache.js';
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
export async function openPostgresStore(o: { url: string; node: string; leaseSeconds?: number; log?: WarnLog }): Promise<Store> {
  try {
    await migrate(o.url, o.node);
  } catch (err) {
    throw storeError(err);
  }
  const cache = new RecordCache();
  const changes = new PgChangeFeed(o.url, o.node, cache, o.log);
  try {
    await changes.start();
  } catch (err) {
    await changes.close();
    throw storeError(err);
  }
  const leaseSeconds = o.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
  const pool = createPool({ url: o.url, node: o.node, leaseSeconds, log: o.log });
  const lease = new LeaseLink(o.url, o.node, leaseSeconds);
  let closing: Promise<void> | undefined;
  return {
    jobs: new PgJobStore(pool, o.node, cache),
    logs: new PgLogStore(pool, o.node),
    settings: new PgSettingsStore(pool),
    nodes: new PgNodeStore(pool, o.node, lease),
    audit: new PgAuditStore(pool),
    changes,
    decider: new PgDeciderStore(pool, o.node),
    async probeWritable() {
      await write(pool, { name: 'gantry_probe', text: PROBE, values: [`readyz:${o.node}`, new Date().toISOString()] });
    },
    close() {
      closing ??= changes.close().then(() => {
        lease.close();
        return pool.end();
      });
      return closing;
    },
  };
}
