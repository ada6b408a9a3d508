import type { Logger } from 'pino';
import type { Store } from '../store/store.js';

const SWEEP_MS = 60 * 60 * 1000;

/**
 * Deletes, at start and every hour, the logs of jobs that finished more
 * than `days` ago (0 keeps everything); the job records stay, only their
 * lines go. The audit trail has its own retention (audit-retention.ts).
 * Returns a stopper.
 */
export function startRetention(o: { store: Store; days: number; log: Logger }): () => void {
  if (o.days === 0) return () => undefined;
  const sweep = async () => {
    const cutoff = new Date(Date.now() - o.days * 86_400_000).toISOString();
    try {
      const ids = await o.store.jobs.finishedBefore(cutoff);
      for (const id of ids) await o.store.logs.deleteJob(id);
      if (ids.length) o.log.info({ jobs: ids.length, cutoff }, 'deleted old job logs');
    } catch (err) {
      o.log.error({ err }, 'log retention sweep failed');
    }
  };
  void sweep();
  const timer = setInterval(() => void sweep(), SWEEP_MS);
  timer.unref();
  return () => clearInterval(timer);
}
