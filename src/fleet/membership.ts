import type { Logger } from 'pino';
import { StoreUnavailableError } from '../model/errors.js';
import type { NodeSeat } from '../runner/node-seat.js';
import type { NodeInfo, NodeRecord, SettledJob, Store } from '../store/store.js';
import { settleLostJob } from './node-loss.js';

export interface MembershipDeps {
  store: Store;
  info: NodeInfo;
  /** Whether other nodes share the store. */
  shared: boolean;
  log: Logger;
  /** Jobs of lost nodes were settled by this node (tell followers, look at the queue). */
  onSettled: (settled: SettledJob[]) => void;
  /** This node learnt it lost its lease: kill the runs of jobs that are no longer its own. */
  onFenced: () => Promise<void>;
  /** Another process registered as this node: stop driving its jobs (leave them running for that process). */
  onSuperseded: () => void;
  /** Called after each heartbeat, so missed signals cost at most one period. */
  onHeartbeat: () => void;
}

/**
 * This node's seat in the fleet: it registers the node (a new epoch, which
 * fences off every older process of the same node), renews the lease every
 * third of it, and expires the leases of nodes that stopped renewing,
 * settling their jobs. All times are the store's.
 *
 * The rules it keeps:
 * - A node expires others only after it has itself reached the store for a
 *   whole lease without a gap: after an outage of the store every node
 *   first gets a chance to renew, so an outage alone never declares nodes lost.
 * - A node whose renewal is refused was declared lost (or replaced by a
 *   newer process of the same name): it holds no lease until it has killed
 *   the runs of jobs it no longer owns, then registers again.
 */
export class NodeMembership implements NodeSeat {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly shared: boolean;
  private current: NodeRecord | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Since when the store has answered every heartbeat (ms, this process's clock), or null after a miss. */
  private reachableSince: number | null = null;
  private beating = false;
  private stopped = false;

  constructor(private readonly d: MembershipDeps) {
    this.name = d.info.name;
    this.labels = d.info.labels;
    this.shared = d.shared;
  }

  epoch(): number | null {
    return this.current?.epoch ?? null;
  }

  drained(): boolean {
    return this.current?.drained ?? false;
  }

  /** Registers this process as the node; the heartbeat starts with `start`. */
  async join(): Promise<NodeRecord> {
    this.current = await this.d.store.nodes.register(this.d.info);
    this.reachableSince = Date.now();
    this.d.log.info({ node: this.name, epoch: this.current.epoch, drained: this.current.drained }, 'joined the fleet');
    return this.current;
  }

  start(): void {
    const periodMs = (this.d.info.leaseSeconds * 1000) / 3;
    this.timer = setInterval(() => void this.heartbeat(), periodMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** The node's record changed elsewhere (a drain): read it again. */
  async refresh(): Promise<void> {
    const mine = await this.d.store.nodes.get(this.name);
    if (mine && this.current && mine.epoch === this.current.epoch) this.current = mine;
  }

  /** One heartbeat; beats never overlap (a slow store delays the next one). */
  async heartbeat(): Promise<void> {
    if (this.beating || this.stopped) return;
    this.beating = true;
    try {
      await this.beat();
    } catch (err) {
      this.reachableSince = null;
      const level = err instanceof StoreUnavailableError ? 'warn' : 'error';
      this.d.log[level]({ err, node: this.name }, 'node heartbeat failed');
    } finally {
      this.beating = false;
    }
    if (!this.stopped) this.d.onHeartbeat();
  }

  private async beat(): Promise<void> {
    const { nodes } = this.d.store;
    const epoch = this.current?.epoch;
    if (epoch === undefined) {
      await this.join();
      return;
    }
    if (!(await nodes.renew(this.name, epoch))) {
      await this.fenced(epoch);
      return;
    }
    this.reachableSince ??= Date.now();
    await this.refresh();
    if (Date.now() - this.reachableSince >= this.d.info.leaseSeconds * 1000) await this.expireOthers();
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
      this.d.onSuperseded();
      return;
    }
    this.d.log.warn(
      { node: this.name, epoch },
      'this node was declared lost while it was unreachable; killing the jobs the fleet settled, then rejoining',
    );
    await this.d.onFenced();
    await this.join();
  }

  private async expireOthers(): Promise<void> {
    const now = new Date();
    const { lost, settled } = await this.d.store.nodes.expire((record, node) => settleLostJob(record, node, now));
    if (lost.length === 0) return;
    this.d.log.warn(
      {
        lost: lost.map((n) => n.name),
        failed: settled.filter((s) => !s.requeued).length,
        requeued: settled.filter((s) => s.requeued).length,
      },
      'nodes declared lost: their leases expired',
    );
    this.d.onSettled(settled);
  }
}
