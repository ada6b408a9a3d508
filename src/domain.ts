import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { GpuAllocator } from './gpu/allocator.js';
import type { JobEventHub } from './jobs/events.js';
import { JobService } from './jobs/service.js';
import type { SpecFieldError } from './model/errors.js';
import type { JobSpec } from './model/job.js';
import { EngineWatch } from './runner/engine-watch.js';
import { ImagePuller, type RegistryLogins } from './runner/images.js';
import { NodeRuns } from './runner/node-runs.js';
import type { NodeSeat } from './runner/node-seat.js';
import { Planner } from './runner/planner.js';
import { Scheduler } from './runner/scheduler.js';
import { SelfFence } from './runner/self-fence.js';
import type { ContainerRuntime } from './runtime/runtime.js';
import { FairShare } from './scheduling/fair-share.js';
import { misfitOn, placementTarget } from './scheduling/placement.js';
import type { PreemptionRule } from './scheduling/preemption.js';
import { QueueState } from './scheduling/queue-state.js';
import type { Quotas } from './scheduling/quotas.js';
import type { SecretSource } from './secrets/source.js';
import type { Store } from './store/store.js';

export interface DomainParts {
  config: Config;
  store: Store;
  runtime: ContainerRuntime;
  gpus: GpuAllocator;
  events: JobEventHub;
  registryLogins: RegistryLogins;
  secrets: SecretSource;
  quotas: Quotas;
  /** This node's seat in the fleet. */
  seat: NodeSeat;
  /** The queue as this node knows it (see newQueue). */
  queue: QueueState;
  /** Why no node could ever run a spec, or null when one could. */
  placementProblem: (spec: JobSpec) => Promise<SpecFieldError | null>;
  log: Logger;
  /** Told how long each scheduling pass took (seconds). */
  onPass?: (seconds: number) => void;
  /** Told of each job preempted, by the rule that allowed it. */
  onPreempt?: (rule: PreemptionRule) => void;
}

/**
 * The queue as this node knows it: fair share's order, and which jobs this
 * node could never run (its name, labels and GPUs, which never change while
 * it runs). Built before the domain, since the teams' view reads it too.
 */
export function newQueue(
  config: Config,
  quotas: Quotas,
  gpus: GpuAllocator,
  node: { name: string; labels: Readonly<Record<string, string>> },
): QueueState {
  const target = placementTarget(node.name, node.labels, gpus);
  return new QueueState(new FairShare(config.fairShareHalfLifeSeconds, quotas), misfitOn(target));
}

/**
 * The job service and the scheduler with the node's runs, wired to whatever
 * store and container runtime they are given: app.ts gives them SQLite or
 * PostgreSQL and Docker, the scheduler's unit tests an in-memory runtime.
 * Each part is built after the parts it uses, so none is bound late.
 */
export function buildDomain(d: DomainParts): { jobs: JobService; scheduler: Scheduler; runs: NodeRuns; selfFence: SelfFence } {
  const { config, queue, gpus, seat } = d;
  const runs = new NodeRuns(gpus, d.log);
  const engine = new EngineWatch(d.runtime, d.log);
  const planner = new Planner({ config, seat, queue, runs, gpus, quotas: d.quotas, engine });
  const jobs = new JobService({
    store: d.store.jobs,
    events: d.events,
    queue,
    policy: config.policy,
    stopGraceSeconds: config.stopGraceSeconds,
    dockerSocket: config.dockerSocket,
    secrets: d.secrets,
    quotas: d.quotas,
    placementProblem: d.placementProblem,
    preview: (job) => planner.preview(job),
  });
  const scheduler = new Scheduler({
    config,
    seat,
    runtime: d.runtime,
    store: d.store,
    jobs,
    events: d.events,
    queue,
    runs,
    planner,
    gpus,
    engine,
    images: new ImagePuller(d.runtime, d.registryLogins),
    secrets: d.secrets,
    log: d.log,
    ...(d.onPass ? { onPass: d.onPass } : {}),
    ...(d.onPreempt ? { onPreempt: d.onPreempt } : {}),
  });
  const selfFence = new SelfFence({
    seat,
    runs,
    leaseSeconds: config.node.leaseSeconds,
    // The longest grace a job of this node may run with: its own, within the maximum.
    stopGraceSeconds: Math.max(config.stopGraceSeconds, config.policy.maxStopGraceSeconds),
    log: d.log,
  });
  return { jobs, scheduler, runs, selfFence };
}
