import pg from 'pg';
import { isConnectionError, storeError } from './errors.js';

export interface WarnLog {
  warn(obj: object, msg: string): void;
}

/** The channel every node's changes are announced on (pg_notify). */
export const CHANNEL = 'gantry';

const INT8_OID = 20;

/**
 * int8 (BIGSERIAL `seq`, counts, epochs) as a JS number rather than pg's
 * default string: every such value here stays far below 2^53. Per
 * connection, not pg's global parser table, so nothing else in the process
 * is affected.
 */
export const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format ?? 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** Connection options shared by the pool, the lease's own connection, the migrator and the change feed's listener. */
export function clientConfig(url: string, node: string): pg.ClientConfig {
  return {
    connectionString: url,
    application_name: `gantry:${node}`.slice(0, 63),
    types: TYPES,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: 5_000,
  };
}

/** The limits of a session, in milliseconds: the server's (pg sends them as startup parameters) and pg's own wait for an answer. */
export type SessionTimeouts = Pick<
  pg.ClientConfig,
  'statement_timeout' | 'lock_timeout' | 'idle_in_transaction_session_timeout' | 'query_timeout'
>;

/**
 * The limits of every pooled connection, sized from the lease L so that
 * nothing a node does in the database can hold up the fleet's liveness for
 * longer than a lease:
 * - lock_timeout = L/3 (one heartbeat): a statement never queues behind a
 *   lock for more than a beat; it fails and its caller tries again.
 * - idle_in_transaction_session_timeout = L: the server ends a transaction
 *   left idle for a whole lease (its process paused or cut off mid-way),
 *   releasing its row locks no later than its node's lease would run out.
 * - statement_timeout = 2L: a statement running two leases is stuck, and
 *   returns its connection to the pool by failing.
 * - query_timeout = 3L (pg's, client side): no answer a lease after the
 *   server would have cancelled the statement means the link itself is
 *   frozen; the query fails as "cannot be reached" and its connection is
 *   dropped, rather than hang until TCP gives up.
 * The migrator and the change feed's listener take none of them: the one
 * waits on an advisory lock while another node migrates, the other idles
 * in LISTEN by design.
 */
export function poolTimeouts(leaseSeconds: number): SessionTimeouts {
  const lease = leaseSeconds * 1000;
  return {
    lock_timeout: Math.round(lease / 3),
    idle_in_transaction_session_timeout: lease,
    statement_timeout: 2 * lease,
    query_timeout: 3 * lease,
  };
}

/**
 * How long one lease renewal may take, connecting included: L/6, half a
 * heartbeat, so a renewal that fails still leaves the node two more
 * chances within its lease, and a slow one is over before the next is due.
 */
export function renewalDeadlineMs(leaseSeconds: number): number {
  return Math.round((leaseSeconds * 1000) / 6);
}

/** Idle pooled connections a node keeps open (GANTRY_PG_POOL_MAX is at least this). */
const POOL_KEPT = 2;

/**
 * The pool every query goes through. It survives PostgreSQL restarting: an
 * idle connection that fails is dropped (its error logged, never thrown at
 * the process) and the next query opens a new one. Two idle connections
 * stay open: a node's own work (its passes, reports and scrapes) overlaps
 * now and then, and a connection closed after each overlap and opened at
 * the next costs PostgreSQL a backend start (a fork, the catalog caches,
 * every prepared statement planned again) many times a minute across a
 * fleet; those above two close after 30 s idle.
 */
export function createPool(o: { url: string; node: string; leaseSeconds: number; log?: WarnLog; max?: number | undefined }): pg.Pool {
  const pool = new pg.Pool({
    ...clientConfig(o.url, o.node),
    ...poolTimeouts(o.leaseSeconds),
    max: o.max ?? 10,
    min: POOL_KEPT,
    idleTimeoutMillis: 30_000,
  });
  pool.on('error', (err) => o.log?.warn({ err }, 'an idle PostgreSQL connection failed; the pool opens a new one when needed'));
  return pool;
}

/** One statement on a pooled connection; "cannot be reached" and "disk full" become StoreUnavailableError. */
export async function write<R extends pg.QueryResultRow>(pool: pg.Pool, q: pg.QueryConfig): Promise<R[]> {
  try {
    return (await pool.query<R>(q)).rows;
  } catch (err) {
    throw storeError(err);
  }
}

/**
 * A read: like `write`, but tried once more on a fresh connection when the
 * first failed for its connection (one PostgreSQL closed in a restart,
 * before the pool noticed): a read has no effect to duplicate.
 */
export async function read<R extends pg.QueryResultRow>(pool: pg.Pool, q: pg.QueryConfig): Promise<R[]> {
  try {
    return (await pool.query<R>(q)).rows;
  } catch (err) {
    if (!isConnectionError(err)) throw err;
  }
  return write<R>(pool, q);
}

/**
 * Runs fn in a transaction on one connection: committed if fn resolves,
 * rolled back if it throws (its error rethrown, mapped as `write` does).
 * A connection that failed is destroyed rather than returned to the pool.
 */
export async function transaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw storeError(err);
  }
  // The pool listens for errors only on idle connections: a connection that
  // drops between two statements of the transaction must not crash the
  // process (the next statement fails instead).
  const onError = () => undefined;
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    if (isConnectionError(err)) broken = err as Error;
    else {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr as Error;
      }
    }
    throw storeError(err);
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

/**
 * PostgreSQL text cannot hold NUL, which SQLite's can: free text that may
 * come from a container (a result line, a reason quoting output) or a client
 * (a job's name, its labels) keeps its place with U+FFFD instead of failing
 * the write.
 */
export function pgText<T extends string | null | undefined>(s: T): T {
  return (typeof s === 'string' && s.includes('\u0000') ? s.replaceAll('\u0000', '\uFFFD') : s) as T;
}
