import type { Logger } from 'pino';
import type { GpuAllocator } from '../gpu/allocator.js';
import type { JobService } from '../jobs/service.js';
import { FencedError } from '../model/errors.js';
import { isTerminal } from '../model/states.js';
import { type ContainerRuntime, MANAGED_LABELS, type ManagedContainer } from '../runtime/runtime.js';
import type { Fence, JobRecord, Store } from '../store/store.js';

export interface ReconcileReport {
  /** Jobs of this node whose container outlived a restart: driven again, their capture resumed. */
  adopted: string[];
  /** Jobs of this node whose container was made and is gone (removed outside Gantry): failed. */
  vanished: string[];
  /**
   * Jobs this node was pulling or starting when Gantry stopped, before their
   * container existed: back in the queue as the same attempt (cancelled instead if their cancel was asked).
   */
  requeued: string[];
  unknownContainers: string[];
  removedLeftovers: string[];
  /** Jobs this node had claimed but not started: back in the queue (cancelled instead if their cancel was asked). */
  unclaimed: string[];
  /** Containers of jobs the fleet gave to another node or attempt meanwhile: killed. */
  fenced: string[];
  /** Runs of this node whose job the store says was cancelled, told so (the cancel's notification was missed). */
  cancelled: string[];
}

/** What reconcile needs of the runs this node already drives. */
export interface OwnedRuns {
  has(jobId: string): boolean;
  /** Asks the run to stop for a cancel; false when it was asked already. */
  requestCancel(jobId: string): boolean;
}

/** The attempt a container runs (containers made before attempts existed ran the first). */
function attemptOf(c: ManagedContainer): number {
  return Number(c.labels[MANAGED_LABELS.attempt] ?? '1');
}

/** Gives a job of this node's back to the queue (JobService.requeue); false when it was no longer this node's. */
async function requeued(jobs: JobService, id: string, fence: Fence): Promise<boolean> {
  try {
    await jobs.requeue(id, fence);
    return true;
  } catch (err) {
    if (err instanceof FencedError) return false;
    throw err;
  }
}

/**
 * Converges this node on what the store says it should run, level-triggered:
 * at start-up, after a gap in the fleet's change feed, and periodically, so a
 * missed notification costs at most one period. The jobs this node already
 * drives (`runs`) are left to their runs, except that a cancel the store
 * holds for one is passed on. For the rest: containers of this node's active
 * jobs are adopted (their capture resumes, they end normally), its jobs
 * whose container vanished fail with a reason, jobs it claimed but never
 * launched, and jobs it was pulling or starting before their container
 * existed, go back to the queue as the same attempt, the container of a job that is now another
 * node's or another attempt's is killed, and labelled containers unknown to
 * the store are reported, never killed. It must not overlap a scheduling
 * pass (a claim being launched would look abandoned).
 */
export async function reconcile(o: {
  node: string;
  /** The epoch this process registered with (NodeSeat.epoch): its writes' fence; null while it holds no lease. */
  epoch: number | null;
  runtime: ContainerRuntime;
  store: Store;
  jobs: JobService;
  keepContainers: boolean;
  log: Logger;
  runs: OwnedRuns;
  /** Unknown containers already reported: each is logged once, not every period. */
  reported: Set<string>;
  adopt: (record: JobRecord, container: ManagedContainer) => void;
}): Promise<ReconcileReport> {
  const report: ReconcileReport = {
    adopted: [],
    vanished: [],
    requeued: [],
    unknownContainers: [],
    removedLeftovers: [],
    unclaimed: [],
    fenced: [],
    cancelled: [],
  };
  // A process that holds no lease writes nothing: the fleet may be settling its jobs.
  const { epoch } = o;
  if (epoch === null) return report;
  const fence = (record: JobRecord): Fence => ({ node: o.node, attempt: record.attempt, epoch });
  const containers = await o.runtime.listManaged();
  const byJob = new Map(containers.map((c) => [c.labels[MANAGED_LABELS.jobId] ?? '', c]));

  const owned = await o.store.jobs.owned(o.node);
  for (const record of owned.claimed) {
    if (o.runs.has(record.id)) continue;
    if (await requeued(o.jobs, record.id, fence(record))) report.unclaimed.push(record.id);
  }

  for (const record of owned.active) {
    if (o.runs.has(record.id)) {
      if (record.cancelRequested && o.runs.requestCancel(record.id)) report.cancelled.push(record.id);
      continue;
    }
    const container = byJob.get(record.id);
    if (container && attemptOf(container) === record.attempt) {
      // Stamped with this process's epoch first: from then on an older process of the node can write nothing about it.
      const held = await o.store.jobs.update(record.id, { nodeEpoch: epoch }, { fence: fence(record) });
      if (held) {
        o.adopt(held, container);
        report.adopted.push(record.id);
      }
      continue;
    }
    if (record.state !== 'running' && record.containerId === null) {
      // Nothing of the job exists in the engine yet (Gantry stopped during its pull, say): its attempt is taken again.
      if (await requeued(o.jobs, record.id, fence(record))) report.requeued.push(record.id);
      continue;
    }
    // Its container was made and is gone: something outside Gantry removed it.
    const reason = `the container vanished while Gantry was not running (removed outside Gantry?); the job was ${record.state}`;
    await o.jobs.transition(record.id, 'failed', { reason, finishedAt: new Date().toISOString() }, fence(record));
    report.vanished.push(record.id);
  }

  for (const c of containers) {
    const jobId = c.labels[MANAGED_LABELS.jobId] ?? '';
    if (o.runs.has(jobId)) continue;
    const record = await o.store.jobs.get(jobId);
    if (!record) {
      report.unknownContainers.push(c.id);
      if (o.reported.has(c.id)) continue;
      o.reported.add(c.id);
      o.log.warn({ containerId: c.id, jobId, names: c.names }, 'container labelled by Gantry but unknown to its store; left alone');
    } else if (!isTerminal(record.state) && (record.node !== o.node || record.attempt !== attemptOf(c))) {
      // The fleet settled the job while this node was away: it is another run's now.
      await o.runtime.remove(c.id).catch(() => undefined);
      report.fenced.push(c.id);
      o.log.warn({ containerId: c.id, jobId, node: record.node, attempt: record.attempt }, 'container of a job now run elsewhere; killed');
    } else if (isTerminal(record.state) && !o.keepContainers) {
      // The job ended (its logs are stored) but Gantry stopped before removing it.
      await o.runtime.remove(c.id).catch(() => undefined);
      report.removedLeftovers.push(c.id);
    }
  }
  return report;
}

/**
 * Releases the GPUs of jobs that no run of this node drives and no container
 * of this node runs: an allocation never outlives what uses it, and a card
 * is never freed while a container (one whose kill failed, say) may still
 * run on it.
 */
export async function releaseOrphanGpus(o: { gpus: GpuAllocator; runs: OwnedRuns; runtime: ContainerRuntime; log: Logger }): Promise<void> {
  const orphans = o.gpus.holdingJobs().filter((jobId) => !o.runs.has(jobId));
  if (orphans.length === 0) return;
  const running = new Set(
    (await o.runtime.listManaged())
      .filter((c) => c.state === 'running' || c.state === 'paused' || c.state === 'restarting')
      .map((c) => c.labels[MANAGED_LABELS.jobId]),
  );
  for (const jobId of orphans) {
    if (running.has(jobId) || o.runs.has(jobId)) continue;
    o.gpus.release(jobId);
    o.log.warn({ jobId }, 'GPUs held by no run and no running container on this node; released');
  }
}
