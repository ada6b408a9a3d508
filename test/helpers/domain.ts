import type { Logger } from 'pino';
import type { Principal } from '../../src/auth/tokens.js';
import type { Config } from '../../src/config.js';
import { buildDomain, newQueue } from '../../src/domain.js';
import { NodeMembership } from '../../src/fleet/membership.js';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import { JobEventHub } from '../../src/jobs/events.js';
import { JobService, type JobServiceDeps } from '../../src/jobs/service.js';
import type { Job, JobSpec } from '../../src/model/job.js';
import { isTerminal } from '../../src/model/states.js';
import type { NodeRuns } from '../../src/runner/node-runs.js';
import type { Scheduler } from '../../src/runner/scheduler.js';
import type { ContainerRuntime } from '../../src/runtime/runtime.js';
import { QueueState } from '../../src/scheduling/queue-state.js';
import { Quotas } from '../../src/scheduling/quotas.js';
import { NO_SECRETS } from '../../src/secrets/source.js';
import type { Store } from '../../src/store/store.js';

/** One node's job service and started scheduler, and the ways a test drives and watches them. */
export interface TestDomain {
  jobs: JobService;
  scheduler: Scheduler;
  runs: NodeRuns;
  gpus: GpuAllocator;
  events: JobEventHub;
  submit(s: JobSpec): Promise<string>;
  /** The job once `pred` holds (by default: once it ended); throws past the timeout. */
  until(id: string, pred?: (j: Job) => boolean, timeoutMs?: number): Promise<Job>;
  /** The job's stored log lines, in order. */
  lines(id: string): Promise<string[]>;
}

/**
 * The domain of one node, `node-1`, as app.ts wires it (buildDomain) on the
 * store and runtime given, with the GPUs given (none by default): its seat
 * joined, with the config's lease, (a fleet of one on
 * a shared store) and its scheduler started. The caller shuts the
 * scheduler down before closing the store.
 */
export async function startDomain(o: {
  store: Store;
  runtime: ContainerRuntime;
  config: Config;
  log: Logger;
  owner: Principal;
  shared?: boolean;
  gpuDevices?: GpuDevice[];
}): Promise<TestDomain> {
  const { store, owner } = o;
  const gpus = new GpuAllocator(o.gpuDevices ?? []);
  const quotas = new Quotas();
  const events = new JobEventHub();
  const seat = new NodeMembership({
    store,
    info: { name: 'node-1', labels: {}, gpus: [], version: 'test', leaseSeconds: o.config.node.leaseSeconds },
    shared: o.shared ?? false,
    log: o.log,
  });
  await seat.join();
  const { jobs, scheduler, runs } = buildDomain({
    config: o.config,
    store,
    runtime: o.runtime,
    gpus,
    events,
    registryLogins: {},
    secrets: NO_SECRETS,
    quotas,
    seat,
    queue: newQueue(o.config, quotas, gpus, seat),
    placementProblem: async () => null,
    log: o.log,
  });
  await scheduler.start();
  return {
    jobs,
    scheduler,
    runs,
    gpus,
    events,
    submit: async (s) => (await jobs.submit(owner, s, { idempotencyKey: null, requestId: null })).job.id,
    async until(id, pred = (j) => isTerminal(j.state), timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const j = await jobs.get(owner, id);
        if (pred(j)) return j;
        if (Date.now() > deadline) throw new Error(`job ${id} is ${j.state} (${j.reason})`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async lines(id) {
      return (await store.logs.tail(id, 10_000)).map((l) => l.line);
    },
  };
}

/**
 * A job service alone on a store (no scheduler: nothing runs), with the
 * test config's policy and a dry run that always says queued; for tests of
 * the service's own rules (submit, cancel, transitions).
 */
export function jobServiceOn(
  store: Store,
  config: Config,
  placementProblem: JobServiceDeps['placementProblem'] = async () => null,
): { service: JobService; events: JobEventHub; queue: QueueState } {
  const events = new JobEventHub();
  const queue = new QueueState();
  const service = new JobService({
    store: store.jobs,
    events,
    queue,
    policy: config.policy,
    stopGraceSeconds: config.stopGraceSeconds,
    dockerSocket: config.dockerSocket,
    secrets: NO_SECRETS,
    quotas: new Quotas(),
    preview: () => ({ code: 'pending', text: 'queued', estimatedStartAt: null }),
    placementProblem,
  });
  return { service, events, queue };
}
