import type { Logger } from 'pino';
import type { NodeRuns } from './node-runs.js';
import type { NodeSeat } from './node-seat.js';

/** How often the node looks at its lease's age. */
const CHECK_MS = 500;

/**
 * When a node that cannot renew its lease stops the runs the fleet would
 * run again elsewhere: after 0.6 of the lease without a renewal sent in
 * time. A healthy node's last good renewal is at most half a lease old
 * (renewed every third of the lease, each within a sixth), so this never
 * fires between good renewals; and the others declare the node lost no
 * sooner than a whole lease after its last renewal, so a stop that takes at
 * most the stop grace is over before then while grace ≤ 0.4 × lease.
 */
export function selfFenceAfterMs(leaseSeconds: number): number {
  return leaseSeconds * 600;
}

/**
 * Fencing by time, on the node itself (Nomad's `stop_on_client_after`): a
 * node cut off from the fleet starts nothing new at once (its seat has no
 * epoch), and once its lease is old enough that the others may soon declare
 * it lost (`selfFenceAfterMs`), it stops every run whose job a node_lost
 * retry would put back in the queue, so that the next attempt, elsewhere,
 * never overlaps this one. Runs of jobs that would not run again keep
 * running through the outage: if the fleet settles them meanwhile, the node
 * kills them when it learns it was fenced. A frozen process (SIGSTOP, a
 * paused VM) cannot stop anything while frozen; it does so the moment it
 * runs again.
 */
export class SelfFence {
  private timer: NodeJS.Timeout | null = null;
  /** Whether the runs were stopped for the current outage (they are stopped once per outage). */
  private fenced = false;

  constructor(
    private readonly d: {
      seat: NodeSeat;
      runs: NodeRuns;
      leaseSeconds: number;
      stopGraceSeconds: number;
      log: Logger;
    },
  ) {}

  start(): void {
    const { leaseSeconds, stopGraceSeconds, log } = this.d;
    if (this.d.seat.shared && stopGraceSeconds > 0.4 * leaseSeconds) {
      log.warn(
        { leaseSeconds, stopGraceSeconds },
        'the stop grace is longer than 0.4 × the lease: a node cut off from the fleet may still be stopping a job when its next attempt starts elsewhere; raise GANTRY_NODE_LEASE_SECONDS or lower GANTRY_STOP_GRACE_SECONDS and GANTRY_MAX_STOP_GRACE_SECONDS',
      );
    }
    this.timer = setInterval(() => void this.check(), CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Stops the runs to fence when the lease is old enough; a renewal in time again ends the outage. */
  async check(): Promise<void> {
    const since = this.d.seat.sinceRenewed();
    if (since === null || !this.d.seat.shared) return;
    if (since < selfFenceAfterMs(this.d.leaseSeconds)) {
      this.fenced = false;
      return;
    }
    if (this.fenced) return;
    this.fenced = true;
    const reason = `node "${this.d.seat.name}" could not renew its lease for ${Math.round(since / 1000)} s; the attempt is stopped before the fleet runs it again elsewhere`;
    const stopped = await this.d.runs.fence({ cause: 'node_lost', reason });
    if (stopped.length > 0)
      this.d.log.warn(
        { jobs: stopped, sinceRenewedMs: since },
        'lease too old: stopped the runs a node_lost retry would start again elsewhere',
      );
  }
}
