import { EventEmitter } from 'node:events';
import type { GpuSample, GpuWarning } from '../model/gpu-telemetry.js';
import type { Job } from '../model/job.js';

export interface JobEvents {
  /** New log records were stored, up to and including this seq. */
  append: (lastSeq: number) => void;
  /** The job's state or details changed. */
  status: (job: Job) => void;
  /** The GPU sampler measured the job's cards (only on the node that runs it). */
  telemetry: (sample: GpuSample) => void;
  /** The GPU sampler warned about the job (idle, memory over what it declared). */
  gpuWarning: (warning: GpuWarning) => void;
}

const EVENTS: readonly (keyof JobEvents)[] = ['append', 'status', 'telemetry', 'gpuWarning'];

/**
 * In-process fan-out of job events. Per job: live followers (SSE,
 * follow=true) hear of new lines and status changes; they read the lines
 * from the store themselves, at their own pace, so a slow follower costs no
 * memory here. Process-wide: every status change (metrics), and the two
 * signals the scheduler acts on (the queue changed; a cancel was asked).
 * Publishers never learn who listens, so the domain does not depend on the
 * scheduler.
 */
export class JobEventHub {
  private readonly emitters = new Map<string, EventEmitter>();
  private readonly anyStatus = new Set<(job: Job) => void>();
  private readonly queueChanged = new Set<() => void>();
  private readonly cancelRequested = new Set<(jobId: string) => void>();

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
      if (EVENTS.every((e) => emitter.listenerCount(e) === 0)) this.emitters.delete(jobId);
    };
  }

  publishAppend(jobId: string, lastSeq: number): void {
    this.emitters.get(jobId)?.emit('append', lastSeq);
  }

  publishStatus(job: Job): void {
    this.emitters.get(job.id)?.emit('status', job);
    for (const fn of this.anyStatus) fn(job);
  }

  publishTelemetry(sample: GpuSample): void {
    this.emitters.get(sample.jobId)?.emit('telemetry', sample);
  }

  publishGpuWarning(jobId: string, warning: GpuWarning): void {
    this.emitters.get(jobId)?.emit('gpuWarning', warning);
  }

  /** Calls fn on every job's status change; returns the unsubscribe function. */
  onAnyStatus(fn: (job: Job) => void): () => void {
    return listen(this.anyStatus, fn);
  }

  /** A job was queued, or left the queue without running: the queue should be looked at again. */
  publishQueueChanged(): void {
    for (const fn of this.queueChanged) fn();
  }

  onQueueChanged(fn: () => void): () => void {
    return listen(this.queueChanged, fn);
  }

  /** A running (or launching) job was asked to stop. */
  publishCancelRequested(jobId: string): void {
    for (const fn of this.cancelRequested) fn(jobId);
  }

  onCancelRequested(fn: (jobId: string) => void): () => void {
    return listen(this.cancelRequested, fn);
  }

  /** How many followers a job has now (subscribers to its appends). */
  followers(jobId: string): number {
    return this.emitters.get(jobId)?.listenerCount('append') ?? 0;
  }

  /** Whether anyone here listens to the job (its lines or its status). */
  watched(jobId: string): boolean {
    return this.emitters.has(jobId);
  }

  /** The jobs someone here listens to. */
  watchedJobs(): string[] {
    return [...this.emitters.keys()];
  }

  /** Live per-job subscriptions, for leak tests. */
  listenerCount(): number {
    let n = 0;
    for (const em of this.emitters.values()) n += em.listenerCount('append') + em.listenerCount('status');
    return n;
  }
}

function listen<F>(set: Set<F>, fn: F): () => void {
  set.add(fn);
  return () => set.delete(fn);
}
