import type { GpuRequest } from '../model/job.js';
import type { Allocation, GpuAllocator } from './allocator.js';

/** A queued job as the queue policy sees it, in scheduling order. */
export interface QueueEntry {
  id: string;
  gpus?: GpuRequest | undefined;
  /** Only GPUs of this model (a part of their name) will do. */
  model?: string | undefined;
}

export type QueueDecision = { id: string; action: 'start'; alloc: Allocation | null } | { id: string; action: 'wait'; reason: string };

/**
 * One pass over the queue. `entries` come in scheduling order (priority
 * descending, then FIFO), each one this host could run (the caller leaves
 * out what it never could); each either starts (GPUs allocated now) or
 * waits. Order is strict for GPU jobs: once one waits for GPUs, no later
 * GPU job may take GPUs, so a large request is never starved by a stream of
 * small ones of equal or lower priority. CPU jobs do not wait behind it, but
 * every job needs one of the `freeSlots` run slots, taken in order.
 */
export function planQueue(entries: Iterable<QueueEntry>, gpus: GpuAllocator, freeSlots: number, maxRunning: number): QueueDecision[] {
  const out: QueueDecision[] = [];
  let slots = freeSlots;
  let gpuBlocked = false;
  for (const e of entries) {
    if (slots <= 0) {
      out.push({ id: e.id, action: 'wait', reason: `waiting for a run slot (GANTRY_MAX_RUNNING=${maxRunning})` });
      continue;
    }
    let alloc: Allocation | null = null;
    if (e.gpus) {
      alloc = gpuBlocked ? null : gpus.tryAllocate(e.id, e.gpus, e.model);
      if (!alloc) {
        gpuBlocked = true;
        out.push({ id: e.id, action: 'wait', reason: 'waiting for GPUs' });
        continue;
      }
    }
    slots -= 1;
    out.push({ id: e.id, action: 'start', alloc });
  }
  return out;
}
