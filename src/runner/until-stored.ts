import type { Logger } from 'pino';
import { StoreUnavailableError } from '../model/errors.js';

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

/**
 * Runs a store call of a job run, trying again while the store cannot take
 * it (a shared database restarting, a full disk) until it lands or Gantry
 * stops: the container runs on either way, so its state changes are stored
 * late rather than turned into a storage failure of the job. Any other
 * error is thrown at once. A call that failed may still have committed
 * (its reply lost), so each must be safe to repeat (jobs/run-writes.ts).
 */
export async function untilStored<T>(fn: () => Promise<T>, o: { stopped: () => boolean; log: Logger; jobId: string }): Promise<T> {
  for (let delay = FIRST_DELAY_MS; ; delay = Math.min(delay * 2, MAX_DELAY_MS)) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError) || o.stopped()) throw err;
      o.log.warn({ err: err.message, jobId: o.jobId, retryInMs: delay }, 'the store cannot take the write now; retrying');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
