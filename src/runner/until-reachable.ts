import type { Logger } from 'pino';
import { StoreUnavailableError } from '../model/errors.js';

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

/**
 * Runs a store call of a job run, trying again while the store cannot be
 * reached (a shared database restarting) until it lands or Gantry stops:
 * a running job outlives a database outage and its changes are stored when
 * the database is back. A full disk and every other error are thrown at once.
 */
export async function untilReachable<T>(fn: () => Promise<T>, o: { stopped: () => boolean; log: Logger; jobId: string }): Promise<T> {
  for (let delay = FIRST_DELAY_MS; ; delay = Math.min(delay * 2, MAX_DELAY_MS)) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError && err.reason === 'unavailable') || o.stopped()) throw err;
      o.log.warn({ err: err.message, jobId: o.jobId, retryInMs: delay }, 'the store is unreachable; retrying');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
