import pg from 'pg';
import type { RelayableFeed, StoreChange } from '../change-feed.js';
import { changedSince, snapshotNow, visibleIn } from './change-mark.js';
import { CHANNEL, clientConfig, type WarnLog } from './db.js';
import { parse } from './feed-line.js';
import { OwnLine } from './own-line.js';
import type { RecordCache } from './record-cache.js';

/** The first wait before connecting again, doubled after each failure up to the last. */
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 5_000;
/** How often the listening connection is checked, and how long the check may take before it is given up for dead. */
const PING_EVERY_MS = 30_000;
const PING_TIMEOUT_MS = 10_000;
/** Most changes read back after a reconnection; past that, subscribers are told to read everything again (resync). */
const CATCH_UP_MAX = 10_000;

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
 *
 * PostgreSQL wakes every listening session of the database for every
 * notification, so a fleet of N listening nodes costs the server N
 * deliveries per change. The feed can instead be relayed by one node
 * (RelayableFeed): while relayed, it does not listen, and it hears the
 * relay's lines as it would its own notifications, marks included. The
 * handover keeps every job change heard once: the feed takes a snapshot on
 * its own connection after the relay took it on, and waits until that
 * connection has delivered what committed before (own-line.ts); its own
 * connection delivers the changes that snapshot sees, the relay the others
 * (each job change names its transaction). When the relay is lost, the feed listens
 * again and reads back from the relay's last mark, as after any outage.
 */
export class PgChangeFeed implements RelayableFeed {
  private readonly subscribers = new Set<(change: StoreChange) => void>();
  private readonly taps = new Set<(line: string | null) => void>();
  private client: pg.Client | null = null;
  private closed = false;
  private retry: NodeJS.Timeout | null = null;
  private ping: NodeJS.Timeout | null = null;
  private delay = BACKOFF_FIRST_MS;
  /** A snapshot whose transactions this node has heard of (or read): a reconnection reads back what it does not see. */
  private mark: string | null = null;
  /** The last check's snapshot, which becomes the mark once the next check answers. */
  private pending: string | null = null;
  /**
   * Where the changes come from: this feed's own connection (`listen`), a
   * relay (`relayed`), or both while one hands over to the other.
   */
  private mode: 'listen' | 'handing' | 'relayed' = 'listen';
  /** During and after a handover: the job changes this snapshot sees come from the feed's own connection, the rest from the relay. */
  private cut: string | null = null;
  /** The relay's lines held while the feed's own connection finishes the handover. */
  private held: string[] = [];
  /**
   * Notifications held while the feed's own connection is caught up (read
   * back what it missed) or hands over: which of them to hear depends on the
   * snapshot that ends it, whose answer may come after them.
   */
  private early: (string | undefined)[] | null = null;
  /** The line this feed notifies to learn that its connection has delivered everything before it. */
  private readonly ownLine: OwnLine;

  constructor(
    private readonly url: string,
    private readonly node: string,
    private readonly cache: RecordCache,
    private readonly log?: WarnLog,
    private readonly checkEveryMs = PING_EVERY_MS,
  ) {
    this.ownLine = new OwnLine(node);
  }

  subscribe(fn: (change: StoreChange) => void): () => void {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  }

  tap(fn: (line: string | null) => void): () => void {
    this.taps.add(fn);
    return () => {
      this.taps.delete(fn);
    };
  }

  listening(): boolean {
    return this.client !== null && this.mode === 'listen';
  }

  /** Listens; rejects if the first connection cannot be made. */
  async start(): Promise<void> {
    await this.connect();
    this.hearEarly(null);
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
    this.tell(null);
    this.taps.clear();
    if (client) await client.end().catch(() => undefined);
  }

  async startRelayed(): Promise<boolean> {
    const client = this.client;
    if (client === null || this.mode !== 'listen' || this.closed) return false;
    this.mode = 'handing';
    this.held = [];
    this.early = [];
    this.tell(null);
    let cut: string;
    try {
      cut = await snapshotNow(client);
      await this.ownLine.heard(client, PING_TIMEOUT_MS);
    } catch (err) {
      this.lost(client, err as Error);
      return false;
    }
    if (this.mode !== 'handing' || client !== this.client) return false;
    this.client = null;
    client.removeAllListeners();
    client.on('error', () => undefined);
    client.end().catch(() => undefined);
    this.cut = cut;
    this.mark = cut;
    this.pending = null;
    this.mode = 'relayed';
    this.hearEarly({ snapshot: cut, seen: true });
    for (const line of this.held.splice(0)) this.hear(line, { snapshot: cut, seen: false });
    return true;
  }

  relayed(line: string): void {
    if (this.mode === 'handing') this.held.push(line);
    else if (this.mode === 'relayed') this.hear(line, this.cut === null ? null : { snapshot: this.cut, seen: false });
  }

  relayLost(err: Error): void {
    if (this.mode === 'listen' || this.closed) return;
    const handing = this.mode === 'handing';
    this.mode = 'listen';
    this.cut = null;
    this.held = [];
    if (handing && this.client) {
      // Its own connection dropped changes for the relay meanwhile: read them back as after an outage.
      this.lost(this.client, err);
      return;
    }
    this.cache.setLive(false);
    this.log?.warn({ err }, 'the fleet change relay was lost; listening to PostgreSQL again');
    this.delay = 0;
    this.reconnectLater();
  }

  /**
   * One notification or relayed line: the cache and the subscribers hear of
   * it. With `only`, a job change is heard only if its transaction is seen
   * by `only.snapshot` (`seen`) or not: the other source brings the rest.
   */
  private hear(line: string | undefined, only: { snapshot: string; seen: boolean } | null): void {
    const heard = parse(line);
    if (heard.mark !== null) {
      if (this.mode === 'relayed') {
        this.mark = heard.mark;
        this.pending = null;
      }
      return;
    }
    // A job's announcement reports that one change alone.
    if (only !== null && heard.xid !== null && visibleIn(only.snapshot, heard.xid) !== only.seen) return;
    if (this.mode === 'listen' && line !== undefined) this.tell(line);
    const changes = heard.changes;
    for (const change of changes) if (change.kind === 'job') this.cache.changed(change.jobId, change.record);
    if (heard.origin !== this.node) for (const change of changes) this.deliver(change);
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
      if (this.ownLine.is(msg.payload)) return;
      if (this.early !== null) this.early.push(msg.payload);
      else this.hear(msg.payload, null);
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('the listening connection ended')));
    let missed: StoreChange[] | null = [];
    this.early = [];
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      if (this.mark === null) this.mark = await snapshotNow(client);
      else ({ mark: this.mark, changes: missed } = await changedSince(client, this.mark, CATCH_UP_MAX));
    } catch (err) {
      this.early = null;
      client.end().catch(() => undefined);
      throw err;
    }
    this.pending = null;
    if (this.closed || this.mode !== 'listen') {
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
    this.mode = 'listen';
    this.cut = null;
    this.held = [];
    this.early = null;
    this.cache.setLive(false);
    this.tell(null);
    client.removeAllListeners('notification');
    client.end().catch(() => undefined);
    this.log?.warn({ err }, 'the store change feed lost its PostgreSQL connection; reconnecting');
    this.delay = BACKOFF_FIRST_MS;
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = setTimeout(async () => {
      this.retry = null;
      if (this.closed || this.mode !== 'listen' || this.client) return;
      let missed: StoreChange[] | null;
      try {
        missed = await this.connect();
      } catch {
        this.delay = Math.min(Math.max(this.delay * 2, BACKOFF_FIRST_MS), BACKOFF_MAX_MS);
        if (!this.closed) this.reconnectLater();
        return;
      }
      if (this.closed) return;
      if (missed === null) {
        this.deliver({ kind: 'resync' });
        this.hearEarly(null);
        return;
      }
      this.deliver({ kind: 'nodes' });
      for (const change of missed) {
        if (change.kind === 'job') this.cache.changed(change.jobId, change.record);
        this.deliver(change);
      }
      // The read back gave each job as the mark's snapshot saw it: only later changes are news.
      this.hearEarly(this.mark === null ? null : { snapshot: this.mark, seen: false });
    }, this.delay);
  }

  /**
   * A connection dropped without a word (a network partition) sends no
   * error: a query that never answers finds it. The query takes a snapshot,
   * and its answer moves the mark to the previous one (told to the taps:
   * every line before it was told first).
   */
  beat(): void {
    this.check();
  }

  private check(): void {
    const client = this.client;
    if (!client || this.mode !== 'listen') return;
    const timer = setTimeout(
      () => this.lost(client, new Error(`the listening connection did not answer within ${PING_TIMEOUT_MS} ms`)),
      PING_TIMEOUT_MS,
    );
    snapshotNow(client)
      .then((snapshot) => {
        if (client !== this.client || this.mode !== 'listen') return;
        if (this.pending !== null) {
          this.mark = this.pending;
          this.tell(JSON.stringify({ k: 'mark', m: this.mark }));
        }
        this.pending = snapshot;
      })
      .catch((err: Error) => this.lost(client, err))
      .finally(() => clearTimeout(timer));
  }

  /** Hears the notifications held meanwhile (`only` as for hear), and the next ones as they come. */
  private hearEarly(only: { snapshot: string; seen: boolean } | null): void {
    const early = this.early ?? [];
    this.early = null;
    for (const line of early) this.hear(line, only);
  }

  private tell(line: string | null): void {
    for (const fn of [...this.taps]) fn(line);
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
