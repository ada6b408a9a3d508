import type { Attempt, AttemptRecord } from '../model/attempt.js';
import type { GpuTelemetry } from '../model/gpu-telemetry.js';
import { type Job, type JobSpec, PRIVATE_VALUE_SHOWN } from '../model/job.js';
import type { JobRecord } from '../store/store.js';

/** The API's view of a stored job; a queued job's position and wait reason are filled in by JobService. */
export function toJob(r: JobRecord): Job {
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    state: r.state,
    position: null,
    waiting: null,
    exitCode: r.exitCode,
    reason: r.reason,
    result: r.resultDocument ?? r.result,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    gpus: [...r.gpus],
    node: r.node,
    attempt: r.attempt,
    attempts: attemptViews(r.attempts),
    gpuTelemetry: telemetryOf(r.gpuTelemetry, r.attempt, r),
    notBefore: r.notBefore,
    pull: r.pullStatus === null ? null : { status: r.pullStatus, progress: r.pullProgress },
    labels: r.spec.labels ?? {},
    cancelRequested: r.cancelRequested,
    requestId: r.requestId,
    spec: withoutPrivateValues(r.spec),
  };
}

/** The spec as the API shows it: each private value replaced, its name kept. */
function withoutPrivateValues(spec: JobSpec): JobSpec {
  if (!spec.privateEnv) return spec;
  return { ...spec, privateEnv: Object.fromEntries(Object.keys(spec.privateEnv).map((k) => [k, PRIVATE_VALUE_SHOWN])) };
}

/**
 * The sampler's summary if it is attempt n's (the stored one is the last
 * sampled attempt's, which an attempt never sampled must not show). Once
 * the attempt has ended, GPU-seconds count exactly from its container's
 * start to its end rather than to the last sample (a view is kept per
 * stored record, so a running job's stays the sampler's, to its last sample).
 */
function telemetryOf(
  t: GpuTelemetry | null | undefined,
  n: number,
  run: { gpus: readonly string[]; startedAt: string | null; finishedAt: string | null },
): GpuTelemetry | null {
  if (!t || t.attempt !== n) return null;
  if (run.startedAt === null || run.finishedAt === null) return t;
  const gpuSeconds = Number(((run.gpus.length * Math.max(0, Date.parse(run.finishedAt) - Date.parse(run.startedAt))) / 1000).toFixed(2));
  return { ...t, gpuSeconds };
}

/**
 * The API's view of ended attempts. A job's log sequence numbers run on
 * across its attempts, and an attempt's lines are written before it ends
 * (a node that lost the job can add none after: its writes are fenced), so
 * an attempt's lines are those after the previous attempt's end, up to its own.
 */
export function attemptViews(attempts: readonly AttemptRecord[]): Attempt[] {
  let before = 0;
  return attempts.map((a) => {
    const first = before + 1;
    before = Math.max(before, a.logEnd);
    const wrote = a.logEnd >= first;
    return {
      attempt: a.attempt,
      node: a.node,
      gpus: [...a.gpus],
      outcome: a.outcome,
      cause: a.cause,
      retried: a.retried,
      reason: a.reason,
      exitCode: a.exitCode,
      startedAt: a.startedAt,
      finishedAt: a.finishedAt,
      firstLogSeq: wrote ? first : null,
      lastLogSeq: wrote ? a.logEnd : null,
      gpuTelemetry: telemetryOf(a.gpuTelemetry, a.attempt, a),
    };
  });
}

/** Freezes a JSON-like value and everything in it, so that its serialized form may be remembered. */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
