import { Ring } from '../gpu/telemetry/history.js';
import type { QueuePoint } from '../model/history.js';
import type { JobRecord } from '../store/store.js';

/** Points kept: at one per 30 s, the last six hours. */
export const QUEUE_POINTS = 720;
export const QUEUE_SPACING_MS = 30_000;

interface QueueRow {
  at: number;
  queued: number;
  gpuQueued: number;
  longestWaitSeconds: number;
  meanWaitSeconds: number;
}

/**
 * The queue's length and waiting times over the last hours, as this node
 * knows the queue (fleet-wide): counts only, so it names no job and shows
 * every token the same. In memory, bounded (QUEUE_POINTS).
 */
export class QueueHistory {
  // The timer spaces the points; a sample taken between two ticks is kept too.
  private readonly ring = new Ring<QueueRow>(QUEUE_POINTS, 0, 'rolling');
  private timer: NodeJS.Timeout | null = null;

  /** `queued`: the queued jobs as this node knows them now. */
  constructor(private readonly queued: () => Iterable<JobRecord>) {}

  start(): void {
    this.sample();
    this.timer ??= setInterval(() => this.sample(), QUEUE_SPACING_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look at the queue now. */
  sample(at = Date.now()): void {
    let count = 0;
    let gpuQueued = 0;
    let waitSum = 0;
    let longest = 0;
    for (const r of this.queued()) {
      const wait = Math.max(0, at - Date.parse(r.createdAt)) / 1000;
      count++;
      if (r.spec.gpus) gpuQueued++;
      waitSum += wait;
      longest = Math.max(longest, wait);
    }
    this.ring.push({
      at,
      queued: count,
      gpuQueued,
      longestWaitSeconds: Math.round(longest),
      meanWaitSeconds: count === 0 ? 0 : Math.round((waitSum / count) * 10) / 10,
    });
  }

  since(atMs: number): QueuePoint[] {
    return this.ring.since(atMs).map(({ at, ...rest }) => ({ time: new Date(at).toISOString(), ...rest }));
  }
}
