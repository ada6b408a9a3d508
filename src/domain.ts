import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { GpuAllocator } from './gpu/allocator.js';
import type { JobEventHub } from './jobs/events.js';
import { FairShare } from './jobs/fair-share.js';
import type { PreemptionRule } from './jobs/preemption.js';
import { QueueState } from './jobs/queue-state.js';
import type { Quotas } from './jobs/quotas.js';
import { JobService } from './jobs/service.js';
import type { SpecFieldError } from './model/errors.js';
import type { JobSpec } from './model/job.js';
import type { WaitInfo } from './model/queue.js';
import { ImagePuller, type RegistryLogins } from './runner/images.js';
import type { NodeSeat } from './runner/node-seat.js';
import { Scheduler } from './runner/scheduler.js';
import type { ContainerRuntime } from './runtime/runtime.js';
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
  /** Why no node could ever run a spec, or null when one could. */
  placementProblem: (spec: JobSpec) => Promise<SpecFieldError | null>;
  log: Logger;
  /** Told how long each scheduling pass took (seconds). */
  onPass?: (seconds: number) => void;
  /** Told of each job preempted, by the rule that allowed it. */
  onPreempt?: (rule: PreemptionRule) => void;
}

/**
 * The job service and the scheduler, wired to whatever store and container
 * runtime they are given: app.ts gives them SQLite and Docker, the
 * scheduler's unit tests an in-memory runtime.
 */
export function buildDomain(d: DomainParts): { jobs: JobService; scheduler: Scheduler; queue: QueueState } {
  const queue = new QueueState(new FairShare(d.config.fairShareHalfLifeSeconds, d.quotas));
  const jobs = new JobService({
    store: d.store.jobs,
    events: d.events,
    queue,
    policy: d.config.policy,
    stopGraceSeconds: d.config.stopGraceSeconds,
    dockerSocket: d.config.dockerSocket,
    secrets: d.secrets,
    quotas: d.quotas,
    placementProblem: d.placementProblem,
    // The scheduler is built next; a dry run is only asked for once both exist.
    preview: (job): WaitInfo => scheduler.preview(job),
  });
  const scheduler: Scheduler = new Scheduler({
    config: d.config,
    seat: d.seat,
    runtime: d.runtime,
    store: d.store,
    jobs,
    events: d.events,
    queue,
    gpus: d.gpus,
    images: new ImagePuller(d.runtime, d.registryLogins),
    secrets: d.secrets,
    quotas: d.quotas,
    log: d.log,
    ...(d.onPass ? { onPass: d.onPass } : {}),
    ...(d.onPreempt ? { onPreempt: d.onPreempt } : {}),
  });
  return { jobs, scheduler, queue };
}
