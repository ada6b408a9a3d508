import type Docker from 'dockerode';
import type { Logger } from 'pino';
import type { JobService } from '../jobs/service.js';
import { isTerminal } from '../jobs/states.js';
import { LABELS } from './policy.js';
import type { Scheduler } from './scheduler.js';

export interface ReconcileReport {
  adopted: string[];
  vanished: string[];
  unknownContainers: string[];
  removedLeftovers: string[];
}

/**
 * Matches the store against the containers labelled by Gantry, once at
 * start-up: running or exited containers of active jobs are adopted (their
 * capture resumes, they end normally), jobs whose container vanished fail
 * with a reason, and labelled containers unknown to the store are reported,
 * never killed.
 */
export async function reconcile(deps: {
  docker: Docker;
  jobs: JobService;
  scheduler: Scheduler;
  keepContainers: boolean;
  log: Logger;
}): Promise<ReconcileReport> {
  const { docker, jobs, scheduler, log } = deps;
  const containers = await docker.listContainers({ all: true, filters: { label: [`${LABELS.managed}=true`] } });
  const byJob = new Map(containers.map((c) => [c.Labels[LABELS.jobId] ?? '', c]));
  const report: ReconcileReport = { adopted: [], vanished: [], unknownContainers: [], removedLeftovers: [] };

  for (const row of jobs.repo.active()) {
    const info = byJob.get(row.id);
    if (info) {
      scheduler.adopt(row, info);
      report.adopted.push(row.id);
      continue;
    }
    const reason =
      row.state === 'running'
        ? 'the container vanished while Gantry was not running (removed outside Gantry?)'
        : `Gantry restarted while the job was ${row.state}, before its container existed; submit it again`;
    jobs.transition(row.id, 'failed', { reason, finished_at: new Date().toISOString() });
    report.vanished.push(row.id);
  }

  for (const c of containers) {
    const jobId = c.Labels[LABELS.jobId] ?? '';
    const row = jobs.repo.get(jobId);
    if (!row) {
      report.unknownContainers.push(c.Id);
      log.warn({ containerId: c.Id, jobId, names: c.Names }, 'container labelled by Gantry but unknown to its store; left alone');
    } else if (isTerminal(row.state) && !deps.keepContainers) {
      // The job ended (its logs are stored) but Gantry stopped before removing it.
      await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
      report.removedLeftovers.push(c.Id);
    }
  }
  return report;
}
