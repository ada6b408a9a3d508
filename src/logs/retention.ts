import type { Logger } from 'pino';
import { usageToKeep } from '../jobs/usage-report.js';
import type { RetentionStore, Store } from '../store/store.js';

const SWEEP_MS = 60 * 60 * 1000;
/** Jobs per retention transaction: short enough that no batch holds locks for long, whatever is due. */
const BATCH = 500;
const DAY_MS = 86_400_000;

/** Settings of the sweep: a 0 keeps everything of its kind. */
export interface RetentionSettings {
  /** Logs of jobs that ended more than this many days ago (the audit trail has its own retention: audit-retention.ts). */
  logDays: number;
  /** Records of jobs that ended more than this many days ago (their GPU time is kept for usage). */
  jobDays: number;
  /** Jobs that ended within this span (ms) are kept whatever jobDays says: fair share still counts their GPU time. */
  keepMs: number;
}

/** Runs prune until a batch comes back short; stops early, as done, when another node holds the sweep. How many. */
async function drain(prune: (limit: number) => Promise<number | null>): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await prune(BATCH);
    if (n === null) return total;
    total += n;
    if (n < BATCH) return total;
  }
}

interface RetentionDeps {
  store: Store;
  settings: RetentionSettings;
  log: Logger;
}

/**
 * One sweep: deletes what is due, the logs of jobs that ended before the
 * log cutoff (moving the store's mark, so each job's logs are deleted
 * once) and the records of jobs that ended before the job cutoff (their
 * GPU time folded into the usage summary first); then compacts the job
 * counts. Cutoffs come from the store's clock; batches are short
 * transactions; in a fleet one node deletes at a time and the others leave
 * it to that node. A step that fails is logged, and the next sweep tries
 * again.
 */
export async function sweepRetention(o: RetentionDeps): Promise<void> {
  const { logDays, jobDays, keepMs } = o.settings;
  const retention: RetentionStore = o.store.retention;
  const step = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      o.log.error({ err }, `${what} retention sweep failed`);
    }
  };
  if (logDays > 0) {
    await step('log', async () => {
      const cutoff = await retention.cutoff(logDays);
      const jobs = await drain((limit) => retention.pruneLogs(cutoff, limit));
      if (jobs) o.log.info({ jobs, cutoff }, 'deleted old job logs');
    });
  }
  if (jobDays > 0) {
    await step('job', async () => {
      const cutoff = await retention.cutoff(Math.max(jobDays, keepMs / DAY_MS));
      const jobs = await drain((limit) => retention.pruneJobs(cutoff, limit, usageToKeep));
      if (jobs) o.log.info({ jobs, cutoff }, 'deleted old job records, their GPU time kept for usage');
    });
  }
  await step('count', () => retention.compactCounts());
}

/** Sweeps at start and every hour (sweepRetention). Returns a stopper. */
export function startRetention(o: RetentionDeps): () => void {
  void sweepRetention(o);
  const timer = setInterval(() => void sweepRetention(o), SWEEP_MS);
  timer.unref();
  return () => clearInterval(timer);
}
