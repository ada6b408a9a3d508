import type { Config } from '../config.js';
import type { GpuAllocator } from '../gpu/allocator.js';
import type { SpecFieldError } from '../model/errors.js';
import type { WaitInfo } from '../model/queue.js';
import { decide, type PassDecision, type PassInput, preview } from '../scheduling/decide.js';
import type { QueueState } from '../scheduling/queue-state.js';
import type { Quotas } from '../scheduling/quotas.js';
import type { JobRecord } from '../store/store.js';
import type { EngineWatch } from './engine-watch.js';
import type { NodeRuns } from './node-runs.js';
import type { NodeSeat } from './node-seat.js';

/** Where the scheduler's passes come from: this node's own decision (Planner), or the fleet decider's assignments (AssignedPasses). */
export interface Passes {
  /** Whether a change of the queue is worth a pass here (false where another node decides). */
  readonly followsQueue: boolean;
  /** The start-up reconcile is done: the node knows its runs and may take jobs. */
  markReady(): void;
  decide(): PassDecision | Promise<PassDecision>;
  /** The scheduler applied the last decision (claimed and launched what it could). */
  applied?(): Promise<void>;
  /** What this node would do with the job were it submitted now (a dry run). */
  preview(job: JobRecord): WaitInfo;
  /** The decider's assignment a claim of the job is fenced by, or undefined where the node decided itself. */
  claimFence(jobId: string): { term: number } | undefined;
}

export interface PlannerDeps {
  config: Config;
  seat: NodeSeat;
  queue: QueueState;
  runs: NodeRuns;
  gpus: GpuAllocator;
  quotas: Quotas;
  engine: EngineWatch;
  /** Why this node can never run a job, or null when it could (placement.ts), for dry runs. */
  misfitOf: (record: JobRecord) => SpecFieldError | null;
}

/**
 * Takes the snapshot a scheduling pass decides from (the queue, this node's
 * runs, its GPUs, the teams' limits, whether it takes jobs at all) and asks
 * the pure decision (scheduling/decide.ts): for the scheduler's pass, and
 * for a dry run, which is the same pass on the same snapshot.
 */
export class Planner implements Passes {
  readonly followsQueue = true;
  private ready = false;

  constructor(private readonly d: PlannerDeps) {}

  markReady(): void {
    this.ready = true;
  }

  claimFence(): undefined {
    return undefined;
  }

  /** Why this node takes no job now, or null when it does. */
  idle(): WaitInfo | null {
    const { engine, seat } = this.d;
    const unreachable = engine.unreachable;
    const wait = (code: string, text: string): WaitInfo => ({ code, text, estimatedStartAt: null });
    if (unreachable !== null || !this.ready) {
      return wait('engine_unreachable', `waiting for the container engine, which is unreachable: ${unreachable ?? 'not reconciled yet'}`);
    }
    if (seat.epoch() === null)
      return wait(
        'no_lease',
        `node "${seat.name}" holds no lease in the fleet now (not yet joined, or its renewals are not getting through in time)`,
      );
    if (seat.drained()) return wait('node_drained', `node "${seat.name}" is drained: it starts no new job`);
    return null;
  }

  decide(): PassDecision {
    return decide(this.input());
  }

  preview(job: JobRecord): WaitInfo {
    return preview(this.input(), job, { name: this.d.seat.name, unfit: this.d.misfitOf(job) });
  }

  private input(): PassInput {
    const { config, seat, queue, runs, gpus, quotas } = this.d;
    return {
      idle: this.idle(),
      shared: seat.shared,
      queue,
      runs: runs.snapshot(),
      preempting: runs.preemptions(),
      gpus,
      quotas,
      maxRunning: config.maxRunning,
      now: Date.now(),
    };
  }
}
