import pg from 'pg';
import { StoreUnavailableError } from '../../model/errors.js';
import { clientConfig, renewalDeadlineMs } from './db.js';
import { storeError } from './errors.js';

/** How long a caller is told to wait after a renewal that did not make its deadline. */
const RETRY_SECONDS = 5;

/**
 * The one connection this node renews its lease on, apart from the pool:
 * a renewal never waits behind log writes, the GPU sampler or the API for a
 * pooled connection. Each statement, connecting included, has the renewal's
 * deadline (db.ts, renewalDeadlineMs), and so do the server's statement and
 * lock timeouts on it. A statement that fails or misses its deadline drops
 * the connection (a frozen link never answers, and a timed-out query leaves
 * the connection mid-statement); the next statement opens a new one.
 */
export class LeaseLink {
  readonly deadlineMs: number;
  private readonly config: pg.ClientConfig;
  private open: { client: pg.Client; ready: Promise<unknown> } | null = null;
  private closed = false;

  constructor(url: string, node: string, leaseSeconds: number) {
    this.deadlineMs = renewalDeadlineMs(leaseSeconds);
    this.config = {
      ...clientConfig(url, node),
      connectionTimeoutMillis: this.deadlineMs,
      statement_timeout: this.deadlineMs,
      lock_timeout: this.deadlineMs,
      idle_in_transaction_session_timeout: this.deadlineMs,
    };
  }

  /** One statement within the deadline; any failure (StoreUnavailableError when the link is at fault) drops the connection. */
  async query<R extends pg.QueryResultRow>(q: pg.QueryConfig): Promise<R[]> {
    if (this.closed) throw new StoreUnavailableError('unavailable', 'the lease connection is closed', RETRY_SECONDS);
    const link = this.connection();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new StoreUnavailableError('unavailable', `the store did not answer within ${this.deadlineMs} ms`, RETRY_SECONDS)),
        this.deadlineMs,
      );
    });
    try {
      return (await Promise.race([link.ready.then(() => link.client.query<R>(q)), late])).rows;
    } catch (err) {
      this.drop(link.client);
      throw storeError(err);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.closed = true;
    if (this.open) this.drop(this.open.client);
  }

  private connection(): { client: pg.Client; ready: Promise<unknown> } {
    if (this.open) return this.open;
    const client = new pg.Client(this.config);
    // An idle connection that fails must not crash the process: it is dropped and the next renewal reconnects.
    client.on('error', () => this.drop(client));
    this.open = { client, ready: client.connect() };
    return this.open;
  }

  private drop(client: pg.Client): void {
    if (this.open?.client === client) this.open = null;
    // Destroyed rather than ended: ending waits for the server, which a frozen link never lets answer.
    client.connection.stream.destroy();
  }
}
