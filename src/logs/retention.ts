import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import type { JobsRepo } from '../store/jobs-repo.js';
import type { LogStore } from './store.js';

const SWEEP_MS = 60 * 60 * 1000;

/**
 * Deletes the logs of jobs that finished more than `days` ago (0 keeps them
 * forever). The job records stay; only their lines go. Returns a stopper.
 */
export function startRetention(o: { db: Db; logs: LogStore; repo: JobsRepo; days: number; log: Logger }): () => void {
  if (o.days === 0) return () => undefined;
  const sweep = () => {
    const cutoff = new Date(Date.now() - o.days * 86_400_000).toISOString();
    try {
      const ids = o.repo.finishedBefore(cutoff);
      for (const id of ids) o.logs.deleteJob(id);
      if (ids.length) o.log.info({ jobs: ids.length, cutoff }, 'deleted old job logs');
    } catch (err) {
      o.log.error({ err }, 'log retention sweep failed');
    }
  };
  sweep();
  const timer = setInterval(sweep, SWEEP_MS);
  timer.unref();
  return () => clearInterval(timer);
}
