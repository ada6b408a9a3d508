import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { GpuAllocator } from '../gpu/allocator.js';
import type { WaitInfo } from '../model/queue.js';
import type { PassDecision } from '../scheduling/decide.js';
import { outcomeOf } from '../scheduling/fleet-decide.js';
import type { PreemptionRule } from '../scheduling/preemption.js';
import type { PassOutcome } from '../scheduling/queue-state.js';
import type { Assignment, DeciderStore, FleetPreemption, JobRecord, JobStore, NodeReport } from '../store/store.js';
import type { NodeRuns } from './node-runs.js';
import type { NodeSeat } from './node-seat.js';
import type { Passes, Planner } from './planner.js';

export interface AssignedPassesDeps {
  config: Config;
  seat: NodeSeat;
  /** This node's own planner: why it is idle, and its dry runs. */
  planner: Planner;
  decider: DeciderStore;
  jobs: JobStore;
  runs: NodeRuns;
  gpus: GpuAllocator;
  log: Logger;
  /** Told after each report this node wrote (the decider, when it runs here, hears no notification of its own). */
  onReport?: () => void;
}

/**
 * A node's passes where the fleet's decider decides (GANTRY_FLEET_DECIDER=
 * elected): each pass takes this node's assignments, and the scheduler
 * applies them as it applies its own decisions (it claims each job with the
 * node's fence, launches the claimed ones, releases the GPUs of a claim that
 * fails). An assignment that no longer fits here (a run slot or one of its
 * GPUs taken, a card withheld, the node idle) is refused, not applied. After
 * each pass the node reports what it holds and runs, and consumes the
 * assignments it read, applied or refused, in the same write: the decider
 * gives a refused job out again on what the report says. A preemption named
 * for this node stops its victims that still run, once.
 */
export class AssignedPasses implements Passes {
  readonly followsQueue = false;
  /** Assignments read and not yet consumed in a report: job id → the decider's term it was given under. */
  private readonly consumed = new Map<string, number>();
  private reported = '';
  private outcome: { text: string | null; value: PassOutcome } | null = null;

  constructor(private readonly d: AssignedPassesDeps) {}

  markReady(): void {
    this.d.planner.markReady();
  }

  preview(job: JobRecord): WaitInfo {
    return this.d.planner.preview(job);
  }

  async decide(): Promise<PassDecision> {
    const idle = this.d.planner.idle();
    const { assignments, preemptions, outcome } = await this.d.decider.assigned(this.d.seat.name);
    for (const a of assignments) this.consumed.set(a.jobId, a.term);
    if (idle !== null)
      return { fail: [], start: [], preempt: null, outcome: { node: idle, decided: new Map(), beyond: { any: null, gpu: null } } };
    const start = await this.fitting(assignments);
    const preempt = this.preemption(preemptions);
    // The scheduler applies a pass only when the node takes jobs (outcome.node null): this one does, whatever
    // the fleet's view says of the fleet as a whole, so the fleet's view serves only as the reasons of the queue.
    const { decided, beyond } = this.fleetOutcome(outcome);
    return { fail: [], start, preempt, outcome: { node: null, decided, beyond } };
  }

  claimFence(jobId: string): { term: number } | undefined {
    const term = this.consumed.get(jobId);
    return term === undefined ? undefined : { term };
  }

  /** Reports what the node holds and runs now, consuming the assignments read; skipped when nothing changed. */
  async applied(): Promise<void> {
    const epoch = this.d.seat.epoch();
    if (epoch === null) return;
    const report = this.report(epoch);
    const text = JSON.stringify(report);
    if (text === this.reported && this.consumed.size === 0) return;
    const consumed = [...this.consumed].map(([jobId, term]) => ({ jobId, term }));
    if (await this.d.decider.report(report, consumed)) {
      this.reported = text;
      for (const { jobId, term } of consumed) if (this.consumed.get(jobId) === term) this.consumed.delete(jobId);
      this.d.onReport?.();
    }
  }

  /** The assignments this node can still take, in order, each on a copy of its GPUs so that two never share a card. */
  private async fitting(assignments: readonly Assignment[]): Promise<PassDecision['start']> {
    const { gpus, runs, jobs, config } = this.d;
    const trial = gpus.clone();
    let slots = config.maxRunning - runs.size;
    const start: PassDecision['start'] = [];
    for (const a of assignments) {
      if (runs.has(a.jobId)) continue;
      const record = await jobs.get(a.jobId);
      if (record?.state !== 'queued' || record.node !== null) continue;
      if (slots <= 0 || (a.gpus !== null && !trial.fits(a.jobId, a.gpus))) {
        this.d.log.info({ jobId: a.jobId, gpus: a.gpus?.uuids ?? [] }, "refused the decider's assignment: it no longer fits this node");
        continue;
      }
      if (a.gpus !== null) trial.restore(a.jobId, a.gpus);
      slots -= 1;
      start.push({ record, alloc: a.gpus });
    }
    return start;
  }

  /** The first preemption named for this node that it has not applied, with its victims that still run here. */
  private preemption(preemptions: readonly FleetPreemption[]): PassDecision['preempt'] {
    const { runs } = this.d;
    const applied = runs.preemptions();
    for (const p of preemptions) {
      if (applied.has(p.waiter)) continue;
      const victims = p.victims
        .filter((v) => runs.attemptOf(v.jobId) === v.attempt)
        .map((v) => ({ jobId: v.jobId, rule: v.rule as PreemptionRule, reason: v.reason }));
      if (victims.length > 0) return { waiter: p.waiter, victims };
    }
    return null;
  }

  private report(epoch: number): NodeReport {
    const { seat, planner, runs, gpus, config } = this.d;
    return {
      node: seat.name,
      epoch,
      idle: planner.idle(),
      maxRunning: config.maxRunning,
      runs: runs.snapshot().map((r) => ({ ...r, attempt: runs.attemptOf(r.jobId) ?? 1 })),
      holdings: gpus.holdingJobs().flatMap((jobId) => {
        const alloc = gpus.allocationOf(jobId);
        return alloc ? [{ jobId, ...alloc }] : [];
      }),
      withheld: gpus.withheldCards(),
    };
  }

  /** The fleet's view of why jobs wait, as the decider last wrote it (parsed again only when it changed). */
  private fleetOutcome(text: string | null): PassOutcome {
    if (this.outcome === null || this.outcome.text !== text) {
      const value: PassOutcome = text === null ? { node: null, decided: new Map(), beyond: { any: null, gpu: null } } : outcomeOf(text);
      this.outcome = { text, value };
    }
    return this.outcome.value;
  }
}
