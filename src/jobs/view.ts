import type { Job } from '../model/job.js';
import type { JobRecord } from '../store/store.js';

/** The API's view of a stored job; a queued job's position and wait reason are filled in by JobService. */
export function toJob(r: JobRecord): Job {
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    state: r.state,
    position: null,
    exitCode: r.exitCode,
    reason: r.reason,
    result: r.result,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    gpus: [...r.gpus],
    node: r.node,
    attempt: r.attempt,
    pull: r.pullStatus === null ? null : { status: r.pullStatus, progress: r.pullProgress },
    labels: r.spec.labels ?? {},
    cancelRequested: r.cancelRequested,
    requestId: r.requestId,
    spec: r.spec,
  };
}

/** Freezes a JSON-like value and everything in it, so that its serialized form may be remembered. */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
