import type { Logger } from 'pino';
import { StoreUnavailableError } from '../model/errors.js';
import type { NodeSeat } from '../runner/node-seat.js';
import type { NodeInfo, NodeRecord, Renewal, SettledJob, Store } from '../store/store.js';
import { settleLostJob } from './node-loss.js';

export interface MembershipDeps {
  store: Store;
  info: NodeInfo;
  /** Whether other nodes share the store. */
  shared: boolean;
  log: Logger;
  /** The brake held: nodes looked lost, and this node declared none of them (its metric). */
  onBraked?: () => void;
}

/** What the seat tells those who listen (the domain, once it is built on the seat). */
export interface SeatListener {
  /** This process registered the node (at its start, or rejoining after it was declared lost). */
  joined?(): void;
  /** Jobs of lost nodes were settled by this node (tell followers, look at the queue). */
  settled?(settled: SettledJob[]): void;
  /**
   * This node learnt it lost its lease: kill the runs of jobs that are no
   * longer its own. The node rejoins only once every listener resolved.
   */
  fenced?(): Promise<void>;
  /** Another process registered as this node: stop driving its jobs (leave them running for that process). */
  superseded?(): void;
}

/**
 * The brake on expiry: when more than half of the other live nodes look
 * lost at once, the observer is more likely the one cut off (or the store
 * the one struggling) than they are all dead, and it declares no one lost.
 * One node due alone is never braked: with a single other node the two
 * cases cannot be told apart, and a fleet of two must still recover a dead node.
 */
export function brakes(due: number, othersUp: number): boolean {
  return due >= 2 && due * 2 > othersUp;
}

/**
 * This node's seat in the fleet: it registers the node (a new epoch, which
 * fences off every older process of the same node), renews the lease every
 * third of it, and expires the leases of nodes that stopped renewing,
 * settling their jobs. All times are the store's.
 *
 * The rules it keeps:
 * - Each beat renews first and alone; refreshing this node's record and
 *   expiring others follow in the background, never overlapping each other
 *   and never holding up the next renewal. They run only when the renewal
 *   says they are needed (the drain changed, a lease ran out), so a quiet
 *   fleet costs the store one statement per node and beat.
 * - A renewal counts only if it succeeds within its deadline (a sixth of
 *   the lease, half a beat). After a renewal that failed or came late the
 *   node holds no seat (`epoch()` is null: it starts no new job) until one
 *   succeeds in time again, and it holds none either once two beats pass
 *   without a good renewal (a stalled process).
 * - A node expires others only after its renewals have succeeded in time
 *   for a whole lease: after an outage of the store every node first gets
 *   a chance to renew, so an outage alone never declares nodes lost.
 * - When more than half of the other live nodes look lost at once, the
 *   brake holds (`brakes`): no one is declared lost.
 * - A node whose renewal is refused was declared lost (or replaced by a
 *   newer process of the same name): it holds no lease until it has killed
 *   the runs of jobs it no longer owns, then registers again.
 * - A store that cannot be reached is never fatal: every failure is logged
 *   and the next beat tries again.
 */
export class NodeMembership implements NodeSeat {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly shared: boolean;
  private readonly periodMs: number;
  private readonly deadlineMs: number;
  private current: NodeRecord | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** When the last renewal that succeeded in time was sent (ms, this process's clock), or null after one that did not. */
  private renewedAt: number | null = null;
  /** Since when every renewal has succeeded in time, or null after a miss. */
  private reachableSince: number | null = null;
  private renewing = false;
  /** The refresh and expiry of others that the last beat started, while it runs. */
  private keeping: Promise<void> | null = null;
  private stopped = false;
  /** Whether the seat was held at the last renewal, to log each change once. */
  private held = false;
  /** When the last renewal that succeeded in time was sent, kept through misses (ms, this process's clock). */
  private lastRenewal: number | null = null;
  /** What the last renewal learnt, or null when the beat renewed nothing (it joined, or failed): then the beat reads and expires anyway. */
  private learnt: Renewal | null = null;
  /** Set when the lease was found lost, until every listener has stopped what the fleet settled. */
  private fencePending = false;
  private readonly listeners: SeatListener[] = [];

  constructor(private readonly d: MembershipDeps) {
    this.name = d.info.name;
    this.labels = d.info.labels;
    this.shared = d.shared;
    this.periodMs = (d.info.leaseSeconds * 1000) / 3;
    this.deadlineMs = this.periodMs / 2;
  }

  /** The epoch this process holds its lease with, or null while it holds none (not registered, fenced, or not renewing in time). */
  epoch(): number | null {
    if (!this.current || this.renewedAt === null || Date.now() - this.renewedAt >= 2 * this.periodMs) return null;
    return this.current.epoch;
  }

  drained(): boolean {
    return this.current?.drained ?? false;
  }

  sinceRenewed(): number | null {
    return this.lastRenewal === null ? null : Date.now() - this.lastRenewal;
  }

  /** Adds a listener of what happens to the seat. */
  listen(listener: SeatListener): void {
    this.listeners.push(listener);
  }

  /** Registers this process as the node; the heartbeat starts with `start`. */
  async join(): Promise<NodeRecord> {
    const sent = Date.now();
    this.current = await this.d.store.nodes.register(this.d.info);
    this.renewedAt = sent;
    this.lastRenewal = sent;
    this.reachableSince = sent;
    this.held = true;
    this.d.log.info({ node: this.name, epoch: this.current.epoch, drained: this.current.drained }, 'joined the fleet');
    for (const l of this.listeners) l.joined?.();
    return this.current;
  }

  start(): void {
    this.timer = setInterval(() => void this.heartbeat(), this.periodMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * The node's record changed elsewhere (a drain): read it again. Never
   * rejects: a store that cannot be reached now leaves the record as it
   * was, and the next beat reads it again.
   */
  async refresh(): Promise<void> {
    try {
      const mine = await this.d.store.nodes.get(this.name);
      if (mine && this.current && mine.epoch === this.current.epoch) this.current = mine;
    } catch (err) {
      this.d.log.warn({ err, node: this.name }, "could not read this node's record; the next heartbeat reads it again");
    }
  }

  /** One heartbeat: the renewal, then (in the background) the refresh and expiry of others. Renewals never overlap. */
  async heartbeat(): Promise<void> {
    if (this.renewing || this.stopped) return;
    this.renewing = true;
    this.learnt = null;
    try {
      await this.renew();
    } catch (err) {
      this.missed(err);
    } finally {
      this.renewing = false;
    }
    if (this.stopped) return;
    this.keeping ??= this.keep().finally(() => {
      this.keeping = null;
    });
  }

  private async renew(): Promise<void> {
    const epoch = this.current?.epoch;
    if (epoch === undefined) {
      // A node that lost its lease rejoins only after what the fleet settled meanwhile is stopped.
      if (this.fencePending) await this.stopSettled();
      await this.join();
      return;
    }
    const sent = Date.now();
    const renewed = await this.d.store.nodes.renew(this.name, epoch);
    if (!renewed) {
      await this.fenced(epoch);
      return;
    }
    this.learnt = renewed;
    const took = Date.now() - sent;
    if (took > this.deadlineMs) {
      this.missed(new StoreUnavailableError('unavailable', `the renewal took ${took} ms, over its deadline of ${this.deadlineMs} ms`));
      return;
    }
    this.renewedAt = sent;
    this.lastRenewal = sent;
    this.reachableSince ??= sent;
    if (!this.held) this.d.log.info({ node: this.name, epoch }, 'lease renewed in time again; this node takes jobs again');
    this.held = true;
  }

  private missed(err: unknown): void {
    this.renewedAt = null;
    this.reachableSince = null;
    const level = err instanceof StoreUnavailableError ? 'warn' : 'error';
    this.d.log[level]({ err, node: this.name }, 'node heartbeat failed');
    if (this.held) {
      this.d.log.warn({ node: this.name }, 'the lease was not renewed in time; this node starts no new job until it is');
    }
    this.held = false;
  }

  /**
   * Refresh, then expire others once this node has renewed in time for a
   * whole lease; one at a time, errors logged. Each only when the beat's
   * renewal called for it, or said nothing (a beat that joined or failed).
   */
  private async keep(): Promise<void> {
    const learnt = this.learnt;
    try {
      if (learnt === null || learnt.drained !== this.current?.drained) await this.refresh();
      const since = this.reachableSince;
      const due = learnt === null || learnt.othersDue;
      if (due && since !== null && Date.now() - since >= this.d.info.leaseSeconds * 1000) await this.expireOthers();
    } catch (err) {
      const level = err instanceof StoreUnavailableError ? 'warn' : 'error';
      this.d.log[level]({ err, node: this.name }, 'could not expire the leases of other nodes; the next heartbeat tries again');
    }
  }

  private async fenced(epoch: number): Promise<void> {
    const now = await this.d.store.nodes.get(this.name);
    this.current = null;
    if (now && now.state === 'up' && now.epoch > epoch) {
      // Another process registered under this node's name: it owns the node's jobs now.
      this.d.log.error(
        { node: this.name, epoch, theirs: now.epoch },
        'another Gantry process registered as this node; this one takes no more jobs',
      );
      this.stop();
      for (const l of this.listeners) l.superseded?.();
      return;
    }
    this.d.log.warn(
      { node: this.name, epoch },
      'this node was declared lost while it was unreachable; killing the jobs the fleet settled, then rejoining',
    );
    this.fencePending = true;
    await this.stopSettled();
    await this.join();
  }

  /** Every listener stops the runs the fleet settled; until all have, the node does not rejoin (a failure is retried next beat). */
  private async stopSettled(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.fenced?.()));
    this.fencePending = false;
  }

  private async expireOthers(): Promise<void> {
    const now = new Date();
    const brake = { held: false, due: [] as readonly NodeRecord[], othersUp: 0 };
    const { lost, settled } = await this.d.store.nodes.expire(
      (record, node) => settleLostJob(record, node, now),
      (due, othersUp) => {
        Object.assign(brake, { held: brakes(due.length, othersUp), due, othersUp });
        return !brake.held;
      },
    );
    if (brake.held) {
      this.d.log.warn(
        { looksLost: brake.due.map((n) => n.name), othersUp: brake.othersUp },
        'more than half of the other nodes look lost at once: this node assumes the fault is its own and declares no one lost',
      );
      this.d.onBraked?.();
      return;
    }
    if (lost.length === 0) return;
    this.d.log.warn(
      {
        lost: lost.map((n) => n.name),
        failed: settled.filter((s) => !s.requeued).length,
        requeued: settled.filter((s) => s.requeued).length,
      },
      'nodes declared lost: their leases expired',
    );
    for (const l of this.listeners) l.settled?.(settled);
  }
}
