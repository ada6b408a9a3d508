import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { GpuAllocator } from './gpu/allocator.js';
import type { JobEventHub } from './jobs/events.js';
import { JobService } from './jobs/service.js';
import type { SpecFieldError } from './model/errors.js';
import type { JobSpec } from './model/job.js';
import { AssignedPasses } from './runner/assigned-passes.js';
import { EngineWatch } from './runner/engine-watch.js';
import { type DeciderRelay, FleetDecider } from './runner/fleet-decider.js';
import { ImagePuller, type RegistryLogins } from './runner/images.js';
import { NodeRuns } from './runner/node-runs.js';
import type { NodeSeat } from './runner/node-seat.js';
import { Planner } from './runner/planner.js';
import { Scheduler } from './runner/scheduler.js';
import { SelfFence } from './runner/self-fence.js';
import type { ContainerRuntime } from './runtime/runtime.js';
import { FairShare } from './scheduling/fair-share.js';
import type { DeciderPass } from './scheduling/fleet-decide.js';
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
  /** The fleet's decider ran a pass on this node (its metrics). */
  onDeciderPass?: (pass: DeciderPass) => void;
  /** The node's part in the fleet's change relay, which follows its decider; null where the fleet relays nothing. */
  relay?: DeciderRelay | null;
}

/** Whether one elected node decides for the fleet (GANTRY_FLEET_DECIDER=elected, on PostgreSQL); a single host always decides alone. */
export function fleetDecides(config: Config): boolean {
  return config.node.decider === 'elected' && config.databaseUrl !== undefined;
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
  const fairShare = new FairShare(config.fairShareHalfLifeSeconds, quotas);
  // Where one node decides for the fleet, every node keeps the whole queue: any of them may become the decider.
  if (fleetDecides(config)) return new QueueState(fairShare);
  return new QueueState(fairShare, misfitOn(placementTarget(node.name, node.labels, gpus)));
}

/**
 * The job service and the scheduler with the node's runs, wired to whatever
 * store and container runtime they are given: app.ts gives them SQLite or
 * PostgreSQL and Docker, the scheduler's unit tests an in-memory runtime.
 * Each part is built after the parts it uses, so none is bound late.
 */
export function buildDomain(d: DomainParts): {
  jobs: JobService;
  scheduler: Scheduler;
  runs: NodeRuns;
  selfFence: SelfFence;
  /** The fleet's decider where one node decides for the fleet (started and stopped by the caller), else null. */
  decider: FleetDecider | null;
} {
  const { config, queue, gpus, seat } = d;
  const runs = new NodeRuns(gpus, d.log);
  const engine = new EngineWatch(d.runtime, d.log);
  const misfitOf = misfitOn(placementTarget(seat.name, seat.labels, gpus));
  const planner = new Planner({ config, seat, queue, runs, gpus, quotas: d.quotas, engine, misfitOf });
  const store = fleetDecides(config) ? d.store.decider : null;
  const decider =
    store === null
      ? null
      : new FleetDecider({
          store,
          changes: d.store.changes,
          events: d.events,
          seat,
          queue,
          quotas: d.quotas,
          leaseSeconds: config.node.leaseSeconds,
          log: d.log,
          onPass: d.onDeciderPass,
          relay: d.relay ?? null,
        });
  const passes =
    store === null || decider === null
      ? planner
      : new AssignedPasses({
          config,
          seat,
          planner,
          decider: store,
          jobs: d.store.jobs,
          runs,
          gpus,
          log: d.log,
          onReport: () => decider.kick(),
        });
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
    planner: passes,
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
  decider?.onAssigned(() => scheduler.kick());
  return { jobs, scheduler, runs, selfFence, decider };
}
