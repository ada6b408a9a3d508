import { Counter, type Registry } from 'prom-client';
import { ATTEMPT_OUTCOMES, RETRY_CAUSES } from '../model/attempt.js';
import type { Job } from '../model/job.js';

/** How many attempts are remembered to count each one once. */
const SEEN_CAP = 20_000;

/**
 * Ended attempts and retries, counted from the job views this process
 * publishes: each attempt once, when a view first lists it.
 */
export class AttemptMetrics {
  private readonly attempts: Counter<'outcome'>;
  private readonly retries: Counter<'cause'>;
  /** `<job id>#<attempt>` of the attempts counted, oldest first. */
  private readonly seen = new Set<string>();

  constructor(registers: Registry[]) {
    this.attempts = new Counter({
      name: 'gantry_job_attempts_total',
      help: 'Attempts of jobs that ended, by how each ended (a retried attempt ended failed or timed_out).',
      labelNames: ['outcome'],
      registers,
    });
    this.retries = new Counter({
      name: 'gantry_job_retries_total',
      help: "Jobs queued again as a new attempt by their spec's retry rules, by the cause that ended the attempt before.",
      labelNames: ['cause'],
      registers,
    });
    // Every label is exported from the start, so that rate() and increase() see the first one.
    for (const outcome of ATTEMPT_OUTCOMES) this.attempts.inc({ outcome }, 0);
    for (const cause of RETRY_CAUSES) this.retries.inc({ cause }, 0);
  }

  observe(job: Job): void {
    for (const a of job.attempts) {
      const key = `${job.id}#${a.attempt}`;
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      if (this.seen.size > SEEN_CAP) this.seen.delete(this.seen.values().next().value!);
      this.attempts.inc({ outcome: a.outcome });
      if (a.retried && a.cause !== null) this.retries.inc({ cause: a.cause });
    }
  }
}
