import { type AttemptEnd, type AttemptOutcome, INFRA_CAUSES, type RetryCause } from '../model/attempt.js';
import { BACKOFF_MAX_SECONDS, type Retry } from '../model/job.js';
import type { JobPatch, JobRecord } from '../store/store.js';

/** How an attempt ended, before the retry rules are applied to it. */
export interface AttemptEnding {
  outcome: AttemptOutcome;
  cause: RetryCause | null;
  /** How the attempt ended, in words (the job's reason if it is final). */
  reason: string | null;
  exitCode: number | null;
}

export type RetryDecision =
  /** `note`: why no retry although a rule applies (it says fail, or its budget is spent); null when none applies. */
  { action: 'end'; note: string | null } | { action: 'retry'; attempt: number; notBefore: string | null; note: string };

/**
 * Whether an attempt that ended for `cause` is retried, by the spec's
 * rules: the first rule matching the cause (and exit code) decides, then
 * `on` (a retry for each cause it names); an end nothing matches is final,
 * and so is a cancel (`cancelled`) or an end no cause names. A preemption
 * is Gantry's choice, not a failure: it is always retried at once, spends
 * no budget, unless a rule for `preempted` says fail.
 *
 * Budgets: the attempts that ended for the job's own causes may number
 * `maxAttempts`, and those that ended for the infrastructure's (INFRA_CAUSES)
 * as many again, counted apart: a lost node never spends one of the job's
 * attempts, and a job whose node keeps dying still stops, after at most
 * 2 × maxAttempts − 1 attempts in all. A spec that retries only node_lost
 * thus gets `maxAttempts` attempts in all, as that rule always meant.
 *
 * The n-th retry waits initialSeconds × factor^(n−1), at most maxSeconds,
 * before its attempt may start (`notBefore`).
 */
export function decideRetry(
  retry: Retry | undefined,
  ended: { cause: RetryCause | null; exitCode: number | null; attempt: number; history: JobRecord['attempts']; cancelled: boolean },
  now: Date,
): RetryDecision {
  const { cause } = ended;
  if (cause === null || ended.cancelled) return { action: 'end', note: null };
  const next = ended.attempt + 1;
  if (cause === 'preempted') {
    if (retry !== undefined && ruleFor(retry, cause, ended.exitCode) === 'fail')
      return { action: 'end', note: 'not retried: a rule for preempted says fail' };
    return {
      action: 'retry',
      attempt: next,
      notBefore: null,
      note: `queued again as attempt ${next} (a preemption costs the job no attempt)`,
    };
  }
  if (retry === undefined) return { action: 'end', note: null };
  const action = ruleFor(retry, cause, ended.exitCode);
  if (action === null) return { action: 'end', note: null };
  if (action === 'fail') return { action: 'end', note: `not retried: a rule for ${cause} says fail` };
  const infra = INFRA_CAUSES.has(cause);
  const own = (c: RetryCause | null) => c === null || !INFRA_CAUSES.has(c);
  const ownSpent = ended.history.filter((a) => own(a.cause)).length + (infra ? 0 : 1);
  const preempted = ended.history.filter((a) => a.cause === 'preempted').length;
  // Every attempt up to this one has ended; those not the job's own, nor
  // preempted (which are free), were the infrastructure's (a job queued
  // again before attempts were recorded was so for a lost node, the only
  // retry there was).
  const spent = infra ? ended.attempt - ownSpent - preempted : ownSpent;
  const budget = `${infra ? 'infrastructure' : 'own'} attempts: ${spent} of ${retry.maxAttempts} used`;
  if (spent >= retry.maxAttempts) return { action: 'end', note: `${budget}, none left` };
  const notBefore = backoffUntil(retry, ended.attempt, now);
  return {
    action: 'retry',
    attempt: next,
    notBefore,
    note: `queued again as attempt ${next} (${budget})${notBefore ? `, not before ${notBefore}` : ''}`,
  };
}

/** The action of the first rule matching, then of `on`; null when none does. */
function ruleFor(retry: Retry, cause: RetryCause, exitCode: number | null): 'retry' | 'fail' | null {
  for (const rule of retry.rules ?? []) {
    if (rule.cause !== cause) continue;
    if (rule.exitCodes === undefined || (exitCode !== null && rule.exitCodes.includes(exitCode))) return rule.action;
  }
  return retry.on?.includes(cause) ? 'retry' : null;
}

/** When the retry after attempt `ended` may start, or null for at once. */
function backoffUntil(retry: Retry, ended: number, now: Date): string | null {
  const b = retry.backoff;
  if (!b) return null;
  const seconds = Math.min(b.maxSeconds ?? BACKOFF_MAX_SECONDS, b.initialSeconds * b.factor ** (ended - 1));
  return new Date(now.getTime() + seconds * 1000).toISOString();
}

/**
 * The write that settles an ended attempt of a job: back to the queue as
 * the next attempt (no node, no GPUs, no container, `notBefore` set), or
 * its end; either way the attempt is added to the job's history
 * (`endAttempt`). The caller adds what is its own (the result, the log's).
 */
export function settleAttempt(
  record: Pick<JobRecord, 'spec' | 'attempt' | 'attempts' | 'cancelRequested'>,
  e: AttemptEnding,
  now: Date,
): { patch: JobPatch; retried: boolean } {
  const finishedAt = now.toISOString();
  const decision = decideRetry(
    record.spec.retry,
    { cause: e.cause, exitCode: e.exitCode, attempt: record.attempt, history: record.attempts, cancelled: record.cancelRequested },
    now,
  );
  const attempt = (retried: boolean): AttemptEnd => ({
    outcome: e.outcome,
    cause: e.cause,
    retried,
    reason: e.reason,
    exitCode: e.exitCode,
    finishedAt,
  });
  if (decision.action === 'retry') {
    return {
      retried: true,
      patch: {
        state: 'queued',
        node: null,
        attempt: decision.attempt,
        notBefore: decision.notBefore,
        containerId: null,
        gpus: [],
        gpuMemoryMiB: null,
        startedAt: null,
        deadlineAt: null,
        exitCode: null,
        pullStatus: null,
        pullProgress: null,
        reason: `attempt ${record.attempt}: ${e.reason ?? e.outcome}; ${decision.note}`,
        endAttempt: attempt(true),
      },
    };
  }
  return {
    retried: false,
    patch: {
      state: e.outcome,
      finishedAt,
      exitCode: e.exitCode,
      reason: decision.note ? `${e.reason ?? e.outcome} (${decision.note})` : e.reason,
      endAttempt: attempt(false),
    },
  };
}

/**
 * The rule of the queue: a job whose cancel was asked never goes back to
 * it, and a queued job never holds a cancel (so none waits there, holds a
 * reservation or causes a preemption for a job nobody wants). Every write
 * that requeues a job passes through here (`JobService.transition`; a lost
 * node's jobs through `settleAttempt`, which ends a cancelled job), and the
 * store refuses a requeue once a cancel was asked, so a cancel landing
 * between the read and the write is caught on the next read. The write
 * that would have requeued the job ends it cancelled instead: the attempt
 * it ended is recorded as that write had it, not retried; an attempt cut
 * short before its end was known (going back as the same attempt) is
 * recorded cancelled; a job claimed but never started records none.
 */
export function cancelledInstead(record: Pick<JobRecord, 'state' | 'attempt'>, requeue: JobPatch, now: Date): JobPatch {
  const finishedAt = now.toISOString();
  const ended = requeue.endAttempt;
  const reason = ended
    ? `cancelled; attempt ${record.attempt}: ${ended.reason ?? ended.outcome}`
    : `cancelled before attempt ${record.attempt} could go back to the queue`;
  const patch: JobPatch = { state: 'cancelled', finishedAt, reason, pullStatus: null, pullProgress: null };
  if (ended) return { ...patch, endAttempt: { ...ended, retried: false } };
  if (record.state === 'queued') return patch;
  return { ...patch, endAttempt: { outcome: 'cancelled', cause: null, retried: false, reason, exitCode: null, finishedAt } };
}
