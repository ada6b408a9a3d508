import type { RetryCause } from '../model/attempt.js';

/** Why Gantry stops a run that did nothing wrong by its own account: the attempt ends failed with this cause. */
export interface Interruption {
  cause: RetryCause;
  reason: string;
}

/**
 * Where a run's container stands: none yet (policy, pull), created, started
 * (it may have stopped since without the run knowing), or seen to have
 * stopped. A run only moves forward through these.
 */
export type RunPhase = 'preparing' | 'created' | 'started' | 'exited';

const PHASES: readonly RunPhase[] = ['preparing', 'created', 'started', 'exited'];

/**
 * Why the run's container stops, when not of the job's own accord: a cancel
 * by request, an interruption by Gantry (with its cause), the job's
 * timeout, or the container engine going away under it.
 */
export type StopReason = { kind: 'cancel' } | ({ kind: 'interrupt' } & Interruption) | { kind: 'timeout' } | { kind: 'engine_lost' };

/**
 * Which reason explains a stop when several came: a cancel is the user's
 * and final, an interruption is Gantry's decision and outranks the timeout
 * it may race with, and the engine going away explains only a stop that
 * nothing else does.
 */
const RANK: Record<StopReason['kind'], number> = { cancel: 4, interrupt: 3, timeout: 2, engine_lost: 1 };

/**
 * The state of one run: its phase, the reason its container stops, and
 * whether the fleet took the job away from it. A stop reason is recorded
 * once: a later one replaces it only when it outranks it (RANK), so among
 * equals the first reason stands.
 */
export class RunState {
  private current: RunPhase;
  private reason: StopReason | null = null;
  private lost = false;

  constructor(start: { hasContainer: boolean; cancelRequested: boolean }) {
    this.current = start.hasContainer ? 'created' : 'preparing';
    if (start.cancelRequested) this.record({ kind: 'cancel' });
  }

  get phase(): RunPhase {
    return this.current;
  }

  /** Moves the run on to `to` (staying is allowed: a start retried after the engine was away); never back. */
  advance(to: RunPhase): void {
    if (PHASES.indexOf(to) < PHASES.indexOf(this.current)) throw new Error(`a run cannot go back from ${this.current} to ${to}`);
    this.current = to;
  }

  /** Whether the run's container exists (or did: it is removed only once the run is over). */
  get hasContainer(): boolean {
    return this.current !== 'preparing';
  }

  /** Why the container stops, if anything but the job itself stops it. */
  get stop(): StopReason | null {
    return this.reason;
  }

  /** Whether Gantry asked the container to stop (a cancel, an interruption or the timeout). */
  get stopRequested(): boolean {
    return this.reason !== null && this.reason.kind !== 'engine_lost';
  }

  get cancelled(): boolean {
    return this.reason?.kind === 'cancel';
  }

  /** The interruption that stops the run, unless a cancel outranks it. */
  get interruption(): Interruption | null {
    return this.reason?.kind === 'interrupt' ? { cause: this.reason.cause, reason: this.reason.reason } : null;
  }

  requestCancel(): void {
    this.record({ kind: 'cancel' });
  }

  /** False when a cancel or an earlier interruption already explains the stop. */
  interrupt(why: Interruption): boolean {
    return this.record({ kind: 'interrupt', ...why });
  }

  timeout(): void {
    this.record({ kind: 'timeout' });
  }

  /** The container stopped while the engine was away, or as it went away. */
  engineLost(): void {
    this.record({ kind: 'engine_lost' });
  }

  get abandoned(): boolean {
    return this.lost;
  }

  /** The fleet settled the job while this node was cut off; true the first time only. */
  abandon(): boolean {
    if (this.lost) return false;
    this.lost = true;
    return true;
  }

  /** Records `next` unless the recorded reason ranks as high or higher; whether it was recorded. */
  private record(next: StopReason): boolean {
    if (this.reason !== null && RANK[this.reason.kind] >= RANK[next.kind]) return false;
    this.reason = next;
    return true;
  }
}
