import pg from 'pg';
import type { ChangeFeed, StoreChange } from '../store.js';
import { changedSince, snapshotNow } from './change-mark.js';
import { CHANNEL, clientConfig, type WarnLog } from './db.js';
import { carriedRecord, type JobPayload } from './job-announcement.js';
import type { RecordCache } from './record-cache.js';

/** The first wait before connecting again, doubled after each failure up to the last. */
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 5_000;
/** How often the listening connection is checked, and how long the check may take before it is given up for dead. */
const PING_EVERY_MS = 30_000;
const PING_TIMEOUT_MS = 10_000;
/** Most changes read back after a reconnection; past that, subscribers are told to read everything again (resync). */
const CATCH_UP_MAX = 10_000;

/** A notification's payload as the statements of this store send it (small keys: a payload is at most 8000 bytes). */
type Payload =
  | JobPayload
  | { o: string; k: 'logs'; j: [string, number][] }
  | { o: string; k: 'nodes' }
  | { o: string; k: 'decided'; n: string[] }
  | { o: string; k: 'report' }
  | { o: string; k: 'resigned' };

/** A notification read: who sent it and the changes it reports (none for a payload this node cannot read). */
function parse(payload: string | undefined): { origin: string | null; changes: StoreChange[] } {
  let p: Payload;
  try {
    p = JSON.parse(payload ?? '') as Payload;
  } catch {
    return { origin: null, changes: [] };
  }
  if (typeof p !== 'object' || p === null) return { origin: null, changes: [] };
  return { origin: typeof p.o === 'string' ? p.o : null, changes: changesOf(p) };
}

function changesOf(p: Payload): StoreChange[] {
  switch (p.k) {
    case 'job':
      if (typeof p.j !== 'string') return [];
      return [{ kind: 'job', jobId: p.j, state: p.s, node: p.n ?? null, cancelRequested: p.c === true, record: carriedRecord(p) }];
    case 'logs':
      return Array.isArray(p.j) ? p.j.map(([jobId, lastSeq]) => ({ kind: 'log', jobId, lastSeq })) : [];
    case 'nodes':
      return [{ kind: 'nodes' }];
    case 'decided':
      return [{ kind: 'decided', nodes: Array.isArray(p.n) ? p.n : [] }];
    case 'report':
      return [{ kind: 'report' }];
    case 'resigned':
      return [{ kind: 'resigned' }];
    default:
      return [];
  }
}

/**
 * What other nodes change, from PostgreSQL's LISTEN/NOTIFY: every write of
 * the store notifies in its own transaction, so a change is heard only once
 * committed. One dedicated connection listens (a pooled one could not: the
 * pool hands connections around). When it drops, it is opened again with a
 * growing wait, forever until close(). Notifications sent meanwhile are
 * lost, so each reconnection reads back the jobs changed since the feed's
 * mark (change-mark.ts) and delivers them as job changes, with a `nodes`
 * change; a `resync` only when too many changed. The mark moves with each
 * check of the connection: the snapshot of one check is heard of once the
 * next check answers, since the server sends a session its notifications
 * in commit order before the answers to its later statements. The record
 * cache hears of every job change, this node's own included, and is told
 * whenever the connection is lost or back.
 */
export class PgChangeFeed implements ChangeFeed {
  private readonly subscribers = new Set<(change: StoreChange) => void>();
  private client: pg.Client | null = null;
  private closed = false;
  private retry: NodeJS.Timeout | null = null;
  private ping: NodeJS.Timeout | null = null;
  private delay = BACKOFF_FIRST_MS;
  /** A snapshot whose transactions this node has heard of (or read): a reconnection reads back what it does not see. */
  private mark: string | null = null;
  /** The last check's snapshot, which becomes the mark once the next check answers. */
  private pending: string | null = null;

  constructor(
    private readonly url: string,
    private readonly node: string,
    private readonly cache: RecordCache,
    private readonly log?: WarnLog,
    private readonly checkEveryMs = PING_EVERY_MS,
  ) {}

  subscribe(fn: (change: StoreChange) => void): () => void {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  }

  /** Listens; rejects if the first connection cannot be made. */
  async start(): Promise<void> {
    await this.connect();
    this.ping = setInterval(() => this.check(), this.checkEveryMs);
    this.ping.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cache.setLive(false);
    if (this.retry) clearTimeout(this.retry);
    if (this.ping) clearInterval(this.ping);
    const client = this.client;
    this.client = null;
    this.subscribers.clear();
    if (client) await client.end().catch(() => undefined);
  }

  /**
   * Connects and listens; then, unless this is the first connection (whose
   * mark is taken now: the node reads what it needs after it), reads back
   * what changed since the mark: the changes to deliver, null for a resync.
   */
  private async connect(): Promise<StoreChange[] | null> {
    const client = new pg.Client({ ...clientConfig(this.url, this.node), application_name: `gantry:${this.node}:feed`.slice(0, 63) });
    client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL) return;
      const { origin, changes } = parse(msg.payload);
      for (const change of changes) if (change.kind === 'job') this.cache.changed(change.jobId, change.record);
      if (origin !== this.node) for (const change of changes) this.deliver(change);
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('the listening connection ended')));
    let missed: StoreChange[] | null = [];
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      if (this.mark === null) this.mark = await snapshotNow(client);
      else ({ mark: this.mark, changes: missed } = await changedSince(client, this.mark, CATCH_UP_MAX));
    } catch (err) {
      client.end().catch(() => undefined);
      throw err;
    }
    this.pending = null;
    if (this.closed) {
      await client.end().catch(() => undefined);
      return missed;
    }
    this.client = client;
    this.cache.setLive(true);
    return missed;
  }

  /** The listening connection failed: forget it and connect again (once per connection). */
  private lost(client: pg.Client, err: Error): void {
    if (client !== this.client || this.closed) return;
    this.client = null;
    this.cache.setLive(false);
    client.removeAllListeners('notification');
    client.end().catch(() => undefined);
    this.log?.warn({ err }, 'the store change feed lost its PostgreSQL connection; reconnecting');
    this.delay = BACKOFF_FIRST_MS;
    this.reconnectLater();
  }

  private reconnectLater(): void {
    this.retry = setTimeout(async () => {
      this.retry = null;
      if (this.closed) return;
      let missed: StoreChange[] | null;
      try {
        missed = await this.connect();
      } catch {
        this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
        if (!this.closed) this.reconnectLater();
        return;
      }
      if (this.closed) return;
      if (missed === null) {
        this.deliver({ kind: 'resync' });
        return;
      }
      this.deliver({ kind: 'nodes' });
      for (const change of missed) {
        if (change.kind === 'job') this.cache.changed(change.jobId, change.record);
        this.deliver(change);
      }
    }, this.delay);
  }

  /**
   * A connection dropped without a word (a network partition) sends no
   * error: a query that never answers finds it. The query takes a snapshot,
   * and its answer moves the mark to the previous one.
   */
  private check(): void {
    const client = this.client;
    if (!client) return;
    const timer = setTimeout(
      () => this.lost(client, new Error(`the listening connection did not answer within ${PING_TIMEOUT_MS} ms`)),
      PING_TIMEOUT_MS,
    );
    snapshotNow(client)
      .then((snapshot) => {
        if (client !== this.client) return;
        if (this.pending !== null) this.mark = this.pending;
        this.pending = snapshot;
      })
      .catch((err: Error) => this.lost(client, err))
      .finally(() => clearTimeout(timer));
  }

  private deliver(change: StoreChange): void {
    for (const fn of [...this.subscribers]) {
      try {
        fn(change);
      } catch (err) {
        this.log?.warn({ err, change }, 'a store change subscriber threw');
      }
    }
  }
}
