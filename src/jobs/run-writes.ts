import { LRUCache } from 'lru-cache';
import { FencedError } from '../model/errors.js';
import { isTerminal, type JobState } from '../model/states.js';
import type { Fence, JobPatch, JobRecord } from '../store/store.js';

/*
 * The rules of a run's writes about its job: who may make them (the
 * fence), and when a repeated write is already applied.
 */

/**
 * The run that holds the fence still owns the job (its node and attempt,
 * and no newer process of the node took it over), else FencedError.
 */
/** Whether the record is still that run's: its node and attempt, and no newer process of the node. */
export function ownedBy(record: JobRecord, fence: Fence): boolean {
  return record.node === fence.node && record.attempt === fence.attempt && record.nodeEpoch <= fence.epoch;
}

export function assertOwned(record: JobRecord, fence: Fence): void {
  if (record.node !== fence.node || record.attempt !== fence.attempt) {
    const now = record.node === null ? 'back in the queue' : `attempt ${record.attempt} on node "${record.node}"`;
    throw new FencedError(record.id, `it is now ${now}`);
  }
  if (record.nodeEpoch > fence.epoch) {
    throw new FencedError(record.id, `a newer process of node "${record.node}" (epoch ${record.nodeEpoch}) holds it`);
  }
}

/**
 * Every write a run makes must be safe to try again: a write may commit
 * and its reply still be lost (the connection drops before the answer),
 * and the run, told StoreUnavailableError, repeats it (runner/until-stored.ts,
 * runner/end-recorder.ts). The rules below say when the record already
 * holds the write being repeated, so the repeat is a success that changes
 * nothing, rather than an illegal transition or a fenced write.
 *
 * A state change is already applied when the job is in the target state
 * and held as the write leaves it: by the fence's node and attempt, or the
 * node and attempt the patch itself sets (a run giving its job back to the
 * queue sets `node: null`); without a fence (a write not a run's), by the
 * attempt the patch sets, if it sets one. A change that also ends an attempt
 * (`endAttempt`: the job's end, or its requeue as the next attempt) is
 * applied only when that very attempt end is in the job's history: the
 * fence's attempt on the fence's node, with the same outcome, cause,
 * retry and finish time. The fleet settling the job for a lost node writes
 * another end, so that run is fenced as before. A job in another state,
 * or held by another run, is a genuinely different record: the caller's
 * compare-and-set and fence checks apply to it unchanged.
 */
export function transitionApplied(record: JobRecord, to: JobState, patch: JobPatch, fence: Fence | undefined): boolean {
  if (record.state !== to) return false;
  const ended = patch.endAttempt;
  if (ended !== undefined) {
    return record.attempts.some(
      (a) =>
        (fence === undefined || (a.attempt === fence.attempt && a.node === fence.node)) &&
        a.finishedAt === ended.finishedAt &&
        a.outcome === ended.outcome &&
        a.cause === ended.cause &&
        a.retried === ended.retried &&
        a.exitCode === ended.exitCode,
    );
  }
  if (fence === undefined) return patch.attempt === undefined || patch.attempt === record.attempt;
  return heldAsPatched(record, patch, fence);
}

/**
 * A fenced patch the store refused is already applied when the patch
 * itself moved the job out of the fence's hands (its `node` or `attempt`)
 * and the job is held as the patch leaves it, not ended.
 */
export function patchApplied(record: JobRecord, patch: JobPatch, fence: Fence): boolean {
  const moves = (patch.node !== undefined && patch.node !== fence.node) || (patch.attempt !== undefined && patch.attempt !== fence.attempt);
  return moves && !isTerminal(record.state) && heldAsPatched(record, patch, fence);
}

/** The job is held by the node and attempt the fence names, as the patch changes them. */
function heldAsPatched(record: JobRecord, patch: JobPatch, fence: Fence): boolean {
  const node = patch.node !== undefined ? patch.node : fence.node;
  const attempt = patch.attempt ?? fence.attempt;
  return record.node === node && record.attempt === attempt;
}

/**
 * What was last announced of each job (its state, node and attempt): a
 * repeated write found already applied is announced only when its first
 * try's reply was lost before it could be. An entry evicted costs at most
 * one repeated status event.
 */
export class Announced {
  private readonly last: LRUCache<string, string>;

  constructor(max: number) {
    this.last = new LRUCache({ max });
  }

  note(record: JobRecord): void {
    this.last.set(record.id, keyOf(record));
  }

  has(record: JobRecord): boolean {
    return this.last.get(record.id) === keyOf(record);
  }
}

function keyOf(record: JobRecord): string {
  return `${record.state}:${record.node ?? ''}:${record.attempt}`;
}
