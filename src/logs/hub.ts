import { EventEmitter } from 'node:events';
import type { Job } from '../jobs/schema.js';

export interface JobEvents {
  /** New log records were stored, up to and including this seq. */
  append: (lastSeq: number) => void;
  /** The job's state or details changed. */
  status: (job: Job) => void;
}

/**
 * In-process fan-out of job events to live followers (SSE, follow=true).
 * Followers read lines from the store themselves, at their own pace, so a
 * slow follower costs no memory here: this only says "there is more".
 */
export class JobHub {
  private readonly emitters = new Map<string, EventEmitter>();

  subscribe<E extends keyof JobEvents>(jobId: string, event: E, fn: JobEvents[E]): () => void {
    let em = this.emitters.get(jobId);
    if (!em) {
      em = new EventEmitter();
      em.setMaxListeners(0);
      this.emitters.set(jobId, em);
    }
    em.on(event, fn);
    const emitter = em;
    return () => {
      emitter.off(event, fn);
      if (emitter.listenerCount('append') + emitter.listenerCount('status') === 0) this.emitters.delete(jobId);
    };
  }

  publishAppend(jobId: string, lastSeq: number): void {
    this.emitters.get(jobId)?.emit('append', lastSeq);
  }

  publishStatus(job: Job): void {
    this.emitters.get(job.id)?.emit('status', job);
    for (const fn of this.anyStatus) fn(job);
  }

  // issue 9 (metrics): every job's status changes, whoever follows the job.
  private readonly anyStatus = new Set<(job: Job) => void>();

  /** Calls fn on every job's status change; returns the unsubscribe function. */
  onAnyStatus(fn: (job: Job) => void): () => void {
    this.anyStatus.add(fn);
    return () => this.anyStatus.delete(fn);
  }

  /** How many followers a job has now (subscribers to its appends). */
  followers(jobId: string): number {
    return this.emitters.get(jobId)?.listenerCount('append') ?? 0;
  }

  /** Live subscriptions, for metrics and leak tests. */
  listenerCount(): number {
    let n = 0;
    for (const em of this.emitters.values()) n += em.listenerCount('append') + em.listenerCount('status');
    return n;
  }
}
