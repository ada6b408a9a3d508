import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideRetry, settleAttempt } from '../../src/jobs/retry-policy.js';
import { type AttemptRecord, INFRA_CAUSES, RETRY_CAUSES, type RetryCause } from '../../src/model/attempt.js';
import { JobSpecSchema, type Retry } from '../../src/model/job.js';

const now = new Date('2026-12-02T10:00:00.000Z');
const OWN_CAUSES = RETRY_CAUSES.filter((c) => !INFRA_CAUSES.has(c));

/** An ended attempt of the history, by its cause. */
function ended(attempt: number, cause: RetryCause | null): AttemptRecord {
  return {
    attempt,
    node: 'a',
    gpus: [],
    outcome: 'failed',
    cause,
    retried: true,
    reason: 'r',
    exitCode: null,
    startedAt: null,
    finishedAt: now.toISOString(),
    logEnd: 0,
  };
}

const decide = (
  retry: Retry | undefined,
  cause: RetryCause | null,
  o: { exitCode?: number | null; attempt?: number; history?: AttemptRecord[]; cancelled?: boolean } = {},
) =>
  decideRetry(
    retry,
    { cause, exitCode: o.exitCode ?? null, attempt: o.attempt ?? 1, history: o.history ?? [], cancelled: o.cancelled ?? false },
    now,
  );

test('without a retry spec, a cause no rule can name, or a cancel, the end is final and says nothing more', () => {
  assert.deepEqual(decide(undefined, 'exit_code', { exitCode: 1 }), { action: 'end', note: null });
  const all: Retry = { maxAttempts: 5, on: [...RETRY_CAUSES] };
  assert.deepEqual(decide(all, null), { action: 'end', note: null });
  for (const cause of RETRY_CAUSES) assert.deepEqual(decide(all, cause, { cancelled: true }), { action: 'end', note: null }, cause);
});

test('every cause: `on` and a retry rule retry it, a fail rule ends it with a note, an unmatched one ends it silently', () => {
  for (const cause of RETRY_CAUSES) {
    const other = RETRY_CAUSES.find((c) => c !== cause)!;
    assert.equal(decide({ maxAttempts: 2, on: [cause] }, cause).action, 'retry', `on ${cause}`);
    assert.equal(decide({ maxAttempts: 2, rules: [{ cause, action: 'retry' }] }, cause).action, 'retry', `rule ${cause}`);
    assert.deepEqual(decide({ maxAttempts: 2, rules: [{ cause, action: 'fail' }] }, cause), {
      action: 'end',
      note: `not retried: a rule for ${cause} says fail`,
    });
    if (cause === 'preempted') continue;
    assert.deepEqual(decide({ maxAttempts: 2, on: [other], rules: [{ cause: other, action: 'retry' }] }, cause), {
      action: 'end',
      note: null,
    });
  }
});

test('a preemption is retried at once without a retry spec or a rule, spends no budget, and a fail rule alone ends it', () => {
  const free = { action: 'retry', attempt: 2, notBefore: null, note: 'queued again as attempt 2 (a preemption costs the job no attempt)' };
  assert.deepEqual(decide(undefined, 'preempted'), free);
  const tight: Retry = { maxAttempts: 1, on: ['exit_code', 'node_lost'], backoff: { initialSeconds: 60, factor: 2 } };
  assert.deepEqual(decide(tight, 'preempted'), free, 'no budget spent, no backoff waited');
  const many = [ended(1, 'preempted'), ended(2, 'preempted'), ended(3, 'preempted')];
  assert.equal(decide(tight, 'preempted', { attempt: 4, history: many }).action, 'retry');
  // Preemptions spend neither budget: the job's own and the infrastructure's are whole after them.
  const afterThem = decide({ maxAttempts: 2, on: ['exit_code', 'node_lost'] }, 'node_lost', { attempt: 4, history: many });
  assert.match(afterThem.action === 'retry' ? afterThem.note : '', /infrastructure attempts: 1 of 2 used/);
  assert.deepEqual(decide({ maxAttempts: 3, rules: [{ cause: 'preempted', action: 'fail' }] }, 'preempted'), {
    action: 'end',
    note: 'not retried: a rule for preempted says fail',
  });
  assert.deepEqual(decide(undefined, 'preempted', { cancelled: true }), { action: 'end', note: null }, 'a cancel still ends it');
});

test('the first matching rule wins, and `on` is checked after every rule', () => {
  const retry: Retry = {
    maxAttempts: 3,
    on: ['exit_code'],
    rules: [
      { cause: 'exit_code', exitCodes: [2, 3], action: 'fail' },
      { cause: 'exit_code', exitCodes: [3, 75], action: 'retry' },
    ],
  };
  assert.equal(decide(retry, 'exit_code', { exitCode: 2 }).action, 'end');
  assert.equal(decide(retry, 'exit_code', { exitCode: 3 }).action, 'end', 'the earlier rule names 3 too');
  assert.equal(decide(retry, 'exit_code', { exitCode: 75 }).action, 'retry');
  assert.equal(decide(retry, 'exit_code', { exitCode: 1 }).action, 'retry', 'no rule names 1: `on` retries it');
  const narrow: Retry = { maxAttempts: 3, rules: [{ cause: 'exit_code', exitCodes: [75], action: 'retry' }] };
  assert.deepEqual(decide(narrow, 'exit_code', { exitCode: 1 }), { action: 'end', note: null });
  assert.deepEqual(decide(narrow, 'exit_code', { exitCode: null }), { action: 'end', note: null });
});

test("the job's own causes spend maxAttempts: attempts in all, the first one included", () => {
  for (const cause of OWN_CAUSES) {
    const retry: Retry = { maxAttempts: 3, on: [cause] };
    const first = decide(retry, cause);
    assert.equal(first.action, 'retry');
    assert.equal(first.action === 'retry' && first.attempt, 2);
    assert.match(first.action === 'retry' ? first.note : '', /^queued again as attempt 2 \(own attempts: 1 of 3 used\)$/);
    assert.equal(decide(retry, cause, { attempt: 2, history: [ended(1, cause)] }).action, 'retry');
    assert.deepEqual(decide(retry, cause, { attempt: 3, history: [ended(1, cause), ended(2, 'exit_code')] }), {
      action: 'end',
      note: 'own attempts: 3 of 3 used, none left',
    });
  }
  assert.equal(decide({ maxAttempts: 1, on: ['exit_code'] }, 'exit_code').action, 'end', 'maxAttempts 1: no retry at all');
});

test("infrastructure causes do not spend the job's attempts, and have a budget of their own of the same size", () => {
  const retry: Retry = { maxAttempts: 2, on: ['exit_code', 'node_lost', 'preempted'] };
  // Two nodes lost, then the job's own failure: one of its two attempts is spent, one is left.
  const history = [ended(1, 'node_lost'), ended(2, 'preempted')];
  const own = decide(retry, 'exit_code', { attempt: 3, history });
  assert.equal(own.action, 'retry');
  assert.match(own.action === 'retry' ? own.note : '', /own attempts: 1 of 2 used/);
  // The infrastructure's budget is spent after two of its ends.
  assert.deepEqual(decide(retry, 'node_lost', { attempt: 3, history: [ended(1, 'node_lost'), ended(2, 'exit_code')] }), {
    action: 'end',
    note: 'infrastructure attempts: 2 of 2 used, none left',
  });
  assert.equal(decide(retry, 'node_lost', { attempt: 2, history: [ended(1, 'exit_code')] }).action, 'retry');
});

test('a job whose node keeps dying and that keeps failing stops after 2 × maxAttempts − 1 attempts', () => {
  const retry: Retry = { maxAttempts: 4, on: ['exit_code', 'node_lost'] };
  const history: AttemptRecord[] = [];
  for (let attempt = 1; ; attempt++) {
    const cause = attempt % 2 === 0 ? 'exit_code' : 'node_lost';
    const d = decide(retry, cause, { attempt, history });
    if (d.action === 'end') {
      assert.equal(attempt, 2 * 4 - 1);
      break;
    }
    history.push(ended(attempt, cause));
    assert.ok(attempt < 20, 'bounded');
  }
});

test('a job queued again before attempts were recorded counts those attempts as lost nodes (the only retry there was)', () => {
  const retry: Retry = { maxAttempts: 2, on: ['node_lost', 'exit_code'] };
  assert.deepEqual(decide(retry, 'node_lost', { attempt: 2 }), { action: 'end', note: 'infrastructure attempts: 2 of 2 used, none left' });
  assert.equal(decide(retry, 'exit_code', { attempt: 2 }).action, 'retry');
});

test('backoff: the n-th retry waits initialSeconds × factor^(n−1), at most maxSeconds; none without a backoff', () => {
  const backoff = { initialSeconds: 10, factor: 3, maxSeconds: 60 };
  const at = (attempt: number, b: Retry['backoff']) => {
    const d = decide({ maxAttempts: 10, on: ['exit_code'], ...(b ? { backoff: b } : {}) }, 'exit_code', {
      attempt,
      history: Array.from({ length: attempt - 1 }, (_, i) => ended(i + 1, 'exit_code')),
    });
    assert.equal(d.action, 'retry');
    return d.action === 'retry' ? d.notBefore : 'ended';
  };
  const plus = (s: number) => new Date(now.getTime() + s * 1000).toISOString();
  assert.equal(at(1, backoff), plus(10));
  assert.equal(at(2, backoff), plus(30));
  assert.equal(at(3, backoff), plus(60), 'capped at maxSeconds');
  assert.equal(at(9, { initialSeconds: 3600, factor: 10 }), plus(86_400), 'capped at a day when maxSeconds is absent');
  assert.equal(at(1, undefined), null);
  const d = decide({ maxAttempts: 3, on: ['oom'], backoff }, 'oom');
  assert.match(d.action === 'retry' ? d.note : '', new RegExp(`, not before ${plus(10).replace(/\./g, '\\.')}$`));
});

test('settleAttempt: a retry is a requeue patch as the next attempt, with the attempt kept', () => {
  const record = {
    spec: { image: 'x', command: ['x'], retry: { maxAttempts: 2, on: ['exit_code' as const], backoff: { initialSeconds: 5, factor: 2 } } },
    attempt: 1,
    attempts: [],
    cancelRequested: false,
  };
  const { patch, retried } = settleAttempt(
    record,
    { outcome: 'failed', cause: 'exit_code', reason: 'exited with code 3', exitCode: 3 },
    now,
  );
  assert.equal(retried, true);
  assert.deepEqual(
    { ...patch, reason: undefined, endAttempt: undefined },
    {
      state: 'queued',
      node: null,
      attempt: 2,
      notBefore: new Date(now.getTime() + 5000).toISOString(),
      containerId: null,
      gpus: [],
      gpuMemoryMiB: null,
      startedAt: null,
      deadlineAt: null,
      exitCode: null,
      pullStatus: null,
      pullProgress: null,
      reason: undefined,
      endAttempt: undefined,
    },
  );
  assert.match(patch.reason!, /^attempt 1: exited with code 3; queued again as attempt 2 \(own attempts: 1 of 2 used\), not before /);
  assert.deepEqual(patch.endAttempt, {
    outcome: 'failed',
    cause: 'exit_code',
    retried: true,
    reason: 'exited with code 3',
    exitCode: 3,
    finishedAt: now.toISOString(),
  });

  const last = settleAttempt(
    { ...record, attempt: 2, attempts: [ended(1, 'exit_code')] },
    {
      outcome: 'failed',
      cause: 'exit_code',
      reason: 'exited with code 3',
      exitCode: 3,
    },
    now,
  );
  assert.equal(last.retried, false);
  assert.equal(last.patch.state, 'failed');
  assert.equal(last.patch.reason, 'exited with code 3 (own attempts: 2 of 2 used, none left)');
  assert.equal(last.patch.finishedAt, now.toISOString());
  assert.equal(last.patch.endAttempt?.retried, false);

  const ok = settleAttempt(record, { outcome: 'succeeded', cause: null, reason: null, exitCode: 0 }, now);
  assert.deepEqual(
    { state: ok.patch.state, reason: ok.patch.reason, retried: ok.retried },
    { state: 'succeeded', reason: null, retried: false },
  );
});

test('the retry spec: the released form parses unchanged, and each refusal names its field', () => {
  const spec = (retry: unknown) => JobSpecSchema.safeParse({ image: 'local/busybox:latest', command: ['true'], retry });
  const released = spec({ maxAttempts: 3, on: ['node_lost'] });
  assert.ok(released.success);
  assert.deepEqual(released.data.retry, { maxAttempts: 3, on: ['node_lost'] });
  const withBackoff = spec({ maxAttempts: 3, rules: [{ cause: 'oom', action: 'retry' }], backoff: { initialSeconds: 5 } });
  assert.ok(withBackoff.success);
  assert.deepEqual(withBackoff.data.retry?.backoff, { initialSeconds: 5, factor: 2 });
  const refused = (retry: unknown) => {
    const r = spec(retry);
    assert.equal(r.success, false, JSON.stringify(retry));
    return r.error!.issues.map((i) => i.path.join('.'));
  };
  assert.deepEqual(refused({ maxAttempts: 3 }), ['retry.on']);
  assert.deepEqual(refused({ maxAttempts: 3, rules: [{ cause: 'oom', exitCodes: [1], action: 'retry' }] }), ['retry.rules.0.exitCodes']);
  assert.deepEqual(refused({ maxAttempts: 3, on: ['oom'], backoff: { initialSeconds: 60, maxSeconds: 10 } }), ['retry.backoff.maxSeconds']);
  assert.deepEqual(refused({ maxAttempts: 3, on: ['meteor'] }), ['retry.on.0']);
  assert.deepEqual(refused({ maxAttempts: 3, rules: [{ cause: 'exit_code', exitCodes: [0], action: 'retry' }] }), [
    'retry.rules.0.exitCodes.0',
  ]);
  assert.deepEqual(refused({ maxAttempts: 3, rules: [{ cause: 'oom', action: 'again' }] }), ['retry.rules.0.action']);
  assert.deepEqual(refused({ maxAttempts: 21, on: ['oom'] }), ['retry.maxAttempts']);
  assert.deepEqual(refused({ maxAttempts: 2, on: ['oom'], onExit: [1] }), ['retry']);
});
