import type { Logger } from 'pino';
import type { JobEventHub } from '../jobs/events.js';
import { type DeciderPass, decideFleet, type FleetQueue, outcomeText } from '../scheduling/fleet-decide.js';
import type { Quotas } from '../scheduling/quotas.js';
import type { ChangeFeed, DeciderStore, RelayOffer } from '../store/store.js';
import type { NodeSeat } from './node-seat.js';

/** The node's part in the fleet's change relay (fleet/relay-role.ts), which follows who decides. */
export interface DeciderRelay {
  /** What this node publishes with the lease when it holds it (null: it relays nothing). */
  offer(): RelayOffer | null;
  /** Whether this node decides now; when it does not, what the holder offers (null: nothing, or not known). */
  decides(deciding: boolean, other: RelayOffer | null): void;
}

export interface FleetDeciderDeps {
  store: DeciderStore;
  /** The store's feed of other nodes' changes: their reports wake the decider, assignments for this node wake its scheduler. */
  changes: ChangeFeed | null;
  /** This node's events: a change of the queue wakes the decider. */
  events: JobEventHub;
  seat: NodeSeat;
  /** The fleet-wide queue (every queued job, whichever node could run it). */
  queue: FleetQueue;
  quotas: Quotas;
  leaseSeconds: number;
  log: Logger;
  /** A pass ran (its metrics). */
  onPass?: (pass: DeciderPass) => void;
  /** The change relay, where the fleet relays its feed (GANTRY_FLEET_RELAY). */
  relay?: DeciderRelay | null;
}

/**
 * The fleet's one decider, where GANTRY_FLEET_DECIDER=elected: every node
 * runs one; it beats every third of the node lease and asks for the
 * decider's lease (store.ts, DeciderStore) when it holds it, or when the
 * lease it was last told of has run out or was given up; the node that
 * holds it runs the fleet's passes (scheduling/fleet-decide.ts) on the
 * store's snapshot and the fleet-wide queue, and writes their assignments,
 * preemptions and reasons under its term. Passes are woken by queue changes, by the nodes' reports and by
 * every beat, and never overlap.
 *
 * The rules it keeps:
 * - It decides only while its last renewal that succeeded in time was sent
 *   less than two thirds of a lease ago, and its node holds its own lease:
 *   the store's lease runs a whole lease from the renewal, so the node stops
 *   deciding a third of a lease before another node can take over.
 * - Every write of a pass is checked against its term in the store, which
 *   refuses it whole once another node holds the lease; a refused pass ends
 *   its term at once.
 * - Another node takes over once the lease expired (a whole lease after the
 *   holder's last renewal) and redoes the pass from the store: assignments
 *   and preemptions written before outlive their decider.
 */
export class FleetDecider {
  private term: number | null = null;
  /** When the last renewal that succeeded was sent (this process's clock). */
  private heldAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: (() => void)[] = [];
  private holding = false;
  private deciding = false;
  private again = false;
  private kickPending = false;
  private stopped = false;
  /** The fleet's outcome as last written, so an unchanged one is not written again. */
  private written = '';
  private readonly assignedListeners: (() => void)[] = [];
  private readonly periodMs: number;
  /**
   * While another node holds the lease: when it runs out at the earliest
   * (this process's clock). No beat asks for it before then, so the nodes
   * that do not decide cost the store no statement for it between; the
   * holder's resignation, heard on the feed, ends the wait.
   */
  private heldElsewhereUntil = 0;

  constructor(private readonly d: FleetDeciderDeps) {
    this.periodMs = (d.leaseSeconds * 1000) / 3;
  }

  /** Calls `fn` when a decider gave this node assignments or preemptions. */
  onAssigned(fn: () => void): void {
    this.assignedListeners.push(fn);
  }

  /** The term this node decides for the fleet in now, or null. */
  currentTerm(): number | null {
    return this.isDecider() ? this.term : null;
  }

  /** Whether this node decides for the fleet now. */
  isDecider(): boolean {
    return this.term !== null && this.heldAt !== null && Date.now() - this.heldAt < 2 * this.periodMs && this.d.seat.epoch() !== null;
  }

  start(): void {
    this.unsubscribe.push(this.d.events.onQueueChanged(() => this.kick()));
    const feed = this.d.changes?.subscribe((change) => {
      if (change.kind === 'decided' && change.nodes.includes(this.d.seat.name)) this.assigned();
      if (change.kind === 'report' || change.kind === 'nodes') this.kick();
      if (change.kind === 'resigned') {
        this.heldElsewhereUntil = 0;
        void this.beat();
      }
      if (change.kind === 'resync') {
        this.heldElsewhereUntil = 0;
        this.assigned();
        this.kick();
      }
    });
    if (feed) this.unsubscribe.push(feed);
    this.timer = setInterval(() => void this.beat(), this.periodMs);
    this.timer.unref();
    void this.beat();
  }

  /** Renews the lease now, if this node holds it: what it publishes with it changed (its relay's offer). */
  republish(): void {
    if (this.term !== null) void this.beat();
  }

  /** Stops deciding; a held lease is given up, so another node takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const off of this.unsubscribe.splice(0)) off();
    const term = this.term;
    this.lose(null);
    if (term !== null) await this.d.store.resign(this.d.seat.name, term).catch(() => undefined);
  }

  /** Asks for a pass (coalesced); nothing unless this node is the decider. */
  kick(): void {
    if (this.kickPending || this.stopped) return;
    this.kickPending = true;
    setImmediate(() => {
      this.kickPending = false;
      void this.pass();
    });
  }

  /** Takes or renews the lease; then a pass, which also catches any wake-up missed. */
  private async beat(): Promise<void> {
    if (this.holding || this.stopped) return;
    this.holding = true;
    try {
      const epoch = this.d.seat.epoch();
      if (epoch === null) {
        this.lose('this node holds no lease of its own');
        return;
      }
      const sent = Date.now();
      if (this.term === null && sent < this.heldElsewhereUntil) return;
      const got = await this.d.store.hold({ name: this.d.seat.name, epoch }, this.d.leaseSeconds, this.d.relay?.offer() ?? null);
      if (got.term === null) {
        // A holder that offers no relay (yet: it offers one once its API listens) is asked again next beat.
        this.heldElsewhereUntil = this.d.relay && got.relay === null ? 0 : sent + got.heldForMs;
        this.lose('another node holds the decider lease');
        this.d.relay?.decides(false, got.relay);
        return;
      }
      const term = got.term;
      if (term !== this.term) {
        this.written = '';
        this.d.log.info({ node: this.d.seat.name, term }, 'this node decides for the fleet now');
      }
      this.term = term;
      this.heldAt = sent;
      this.d.relay?.decides(true, null);
    } catch (err) {
      this.d.log.warn({ err }, 'could not renew the decider lease; trying again next beat');
    } finally {
      this.holding = false;
    }
    this.kick();
  }

  private lose(why: string | null): void {
    if (this.term !== null) {
      if (why !== null) this.d.log.warn({ node: this.d.seat.name, term: this.term, why }, 'this node no longer decides for the fleet');
      this.d.relay?.decides(false, null);
    }
    this.term = null;
    this.heldAt = null;
  }

  private assigned(): void {
    for (const fn of this.assignedListeners) fn();
  }

  /** One pass for the fleet; passes never overlap (a kick during one runs another after it). */
  private async pass(): Promise<void> {
    if (this.deciding) {
      this.again = true;
      return;
    }
    this.deciding = true;
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const pass = await this.decideOnce();
      if (pass) this.d.onPass?.({ ...pass, seconds: seconds() });
    } catch (err) {
      this.d.log.warn({ err }, 'the decider pass failed; the next one decides again');
      this.d.onPass?.({ result: 'failed', seconds: seconds(), assigned: 0, preempted: 0, revoked: 0 });
    } finally {
      this.deciding = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    }
  }

  /** One pass, if this node decides: what it did, but for its time; null when it does not decide. */
  private async decideOnce(): Promise<Omit<DeciderPass, 'seconds'> | null> {
    const term = this.term;
    const epoch = this.d.seat.epoch();
    if (!this.isDecider() || term === null || epoch === null) return null;
    const snapshot = await this.d.store.snapshot();
    const decision = decideFleet({
      nodes: snapshot.nodes.map(({ gpus, ...n }) => ({ ...n, devices: gpus })),
      queue: this.d.queue,
      assignments: snapshot.assignments,
      preemptions: snapshot.preemptions,
      quotas: this.d.quotas,
      term,
      now: Date.now(),
    });
    const outcome = outcomeText(decision.outcome);
    const { assign, preempt, revoke, settled } = decision;
    const changed = outcome !== this.written;
    const none = { assigned: 0, preempted: 0, revoked: 0 };
    if (assign.length + preempt.length + revoke.length + settled.length === 0 && !changed) return { result: 'unchanged', ...none };
    // The store checks the term whatever this says; this only spares a write bound to be refused.
    if (!this.isDecider() || this.term !== term) return null;
    const me = { name: this.d.seat.name, epoch };
    if (!(await this.d.store.decide(term, me, { assign, preempt, revoke, settled, outcome: changed ? outcome : null }))) {
      this.lose('the store refused its pass: another node holds the decider lease');
      return { result: 'refused', ...none };
    }
    this.written = outcome;
    if ([...assign, ...preempt].some((x) => x.node === me.name)) this.assigned();
    return { result: 'wrote', assigned: assign.length, preempted: preempt.length, revoked: revoke.length };
  }
}
