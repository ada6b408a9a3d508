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
}

/**
 * Matches the store against the containers labelled by Gantry, once at
 * start-up: containers of active jobs are adopted (their capture resumes,
 * they end normally), jobs whose container vanished fail with a reason,
 * and labelled containers unknown to the store are reported, never killed.
 */
export async function reconcile(o: {
  runtime: ContainerRuntime;
  store: Store;
  jobs: JobService;
  keepContainers: boolean;
  log: Logger;
  adopt: (record: JobRecord, container: ManagedContainer) => void;
}): Promise<ReconcileReport> {
  const containers = await o.runtime.listManaged();
  const byJob = new Map(containers.map((c) => [c.labels[MANAGED_LABELS.jobId] ?? '', c]));
  const report: ReconcileReport = { adopted: [], vanished: [], unknownContainers: [], removedLeftovers: [] };

  for (const record of await o.store.jobs.active()) {
    const container = byJob.get(record.id);
    if (container) {
      o.adopt(record, container);
      report.adopted.push(record.id);
      continue;
    }
    const reason =
      record.state === 'running'
        ? 'the container vanished while Gantry was not running (removed outside Gantry?)'
        : `Gantry restarted while the job was ${record.state}, before its container existed; submit it again`;
    await o.jobs.transition(record.id, 'failed', { reason, finishedAt: new Date().toISOString() });
    report.vanished.push(record.id);
  }

  for (const c of containers) {
    const jobId = c.labels[MANAGED_LABELS.jobId] ?? '';
    const record = await o.store.jobs.get(jobId);
    if (!record) {
      report.unknownContainers.push(c.id);
      o.log.warn({ containerId: c.id, jobId, names: c.names }, 'container labelled by Gantry but unknown to its store; left alone');
    } else if (isTerminal(record.state) && !o.keepContainers) {
      // The job ended (its logs are stored) but Gantry stopped before removing it.
      await o.runtime.remove(c.id).catch(() => undefined);
      report.removedLeftovers.push(c.id);
    }
  }
  return report;
}
