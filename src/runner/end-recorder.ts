import type { Logger } from 'pino';
import type { JobService } from '../jobs/service.js';
import { FencedError } from '../model/errors.js';
import type { JobState } from '../model/states.js';
import type { Fence, JobPatch } from '../store/store.js';

const RETRY_MS = 2000;

/**
 * Records a job's end. When the store refuses the write (disk full, or
 * unreachable), the
 * outcome is kept and retried every few seconds until it lands, so a job's
 * real result is never replaced by a storage error; /readyz reports the
 * store as not writable meanwhile. Resolves once recorded (a try whose
 * reply was lost after it committed is found recorded by the next:
 * jobs/run-writes.ts) or once the job had already ended by another hand, or
 * never when `stopped` turns
 * true first, in which case the job's container stays for the next start's
 * reconcile to decide. A fenced write is not retried: the job is another
 * run's, and FencedError is thrown.
 */
export async function recordEnd(
  o: { jobs: JobService; log: Logger; stopped: () => boolean; fence: Fence },
  jobId: string,
  state: JobState,
  patch: JobPatch,
): Promise<boolean> {
  for (;;) {
    try {
      await o.jobs.transition(jobId, state, patch, o.fence);
      return true;
    } catch (err) {
      if (err instanceof FencedError) throw err;
      o.log.error({ err, jobId, state }, 'could not record the end of the job; retrying');
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
    if (o.stopped()) return false;
  }
}
