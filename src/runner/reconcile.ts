import type { Logger } from 'pino';
import type { JobService } from '../jobs/service.js';
import { isTerminal } from '../model/states.js';
import { type ContainerRuntime, MANAGED_LABELS, type ManagedContainer } from '../runtime/runtime.js';
import type { JobRecord, Store } from '../store/store.js';

export interface ReconcileReport {
  adopted: string[];
  vanished: string[];
  unknownContainers: string[];
  removedLeftovers: string[];
  /** Jobs this node had claimed but not started: back in the queue. */
  unclaimed: string[];
  /** Containers of jobs the fleet gave to another node or attempt meanwhile: killed. */
  fenced: string[];
}

/** The attempt a container runs (containers made before attempts existed ran the first). */
function attemptOf(c: ManagedContainer): number {
  return Number(c.labels[MANAGED_LABELS.attempt] ?? '1');
}

/**
 * Matches the store against the containers labelled by Gantry, once at
 * start-up: containers of this node's active jobs are adopted (their
 * capture resumes, they end normally), its jobs whose container vanished
 * fail with a reason, jobs it had claimed but not started go back to the
 * queue, the container of a job that is now another node's or another
 * attempt's is killed, and labelled containers unknown to the store are
 * reported, never killed.
 */
export async function reconcile(o: {
  node: string;
  runtime: ContainerRuntime;
  store: Store;
  jobs: JobService;
  keepContainers: boolean;
  log: Logger;
  adopt: (record: JobRecord, container: ManagedContainer) => void;
}): Promise<ReconcileReport> {
  const containers = await o.runtime.listManaged();
  const byJob = new Map(containers.map((c) => [c.labels[MANAGED_LABELS.jobId] ?? '', c]));
  const report: ReconcileReport = { adopted: [], vanished: [], unknownContainers: [], removedLeftovers: [], unclaimed: [], fenced: [] };

  for (const record of await o.store.jobs.claimed(o.node)) {
    await o.store.jobs.update(record.id, { node: null }, { state: 'queued', fence: { node: o.node, attempt: record.attempt } });
    report.unclaimed.push(record.id);
  }

  for (const record of await o.store.jobs.active(o.node)) {
    const container = byJob.get(record.id);
    if (container && attemptOf(container) === record.attempt) {
      o.adopt(record, container);
      report.adopted.push(record.id);
      continue;
    }
    const reason =
      record.state === 'running'
        ? 'the container vanished while Gantry was not running (removed outside Gantry?)'
        : `Gantry restarted while the job was ${record.state}, before its container existed; submit it again`;
    await o.jobs.transition(
      record.id,
      'failed',
      { reason, finishedAt: new Date().toISOString() },
      { node: o.node, attempt: record.attempt },
    );
    report.vanished.push(record.id);
  }

  for (const c of containers) {
    const jobId = c.labels[MANAGED_LABELS.jobId] ?? '';
    const record = await o.store.jobs.get(jobId);
    if (!record) {
      report.unknownContainers.push(c.id);
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
