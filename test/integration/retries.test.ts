/**
 * Retry rules against the real engine: each rule's cause produced for real
 * (an exit code, an OOM kill, a timeout, a failed pull), the attempts kept
 * on the job with their log ranges, the log of one attempt or all, the
 * backoff, and the counts in /metrics. node_lost: fleet-faults.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Attempt } from '../../src/model/attempt.js';
import type { LogLine } from '../../src/model/log.js';
import { ADMIN_TOKEN, containersGone, startGantry, TEST_IMAGE } from '../helpers/gantry.js';
import { readSse } from '../helpers/sse.js';

/** A shell command that fails its first attempt (with `fail`) and succeeds from the second on. */
const firstFails = (fail: string) => [
  'sh',
  '-c',
  `echo attempt-$GANTRY_ATTEMPT; if [ "$GANTRY_ATTEMPT" = 1 ]; then ${fail}; fi; echo done`,
];
const summary = (attempts: readonly Attempt[]) => attempts.map((a) => [a.attempt, a.outcome, a.cause, a.retried]);

test('an exit code a rule retries: attempt 1 fails, attempt 2 succeeds; both are kept with their log ranges, and the log shows one attempt or all', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: firstFails('exit 3'),
    retry: { maxAttempts: 3, rules: [{ cause: 'exit_code', exitCodes: [3], action: 'retry' }] },
  });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.equal(done.attempt, 2);
  assert.equal(done.notBefore, null, 'no backoff asked for');
  assert.deepEqual(summary(done.attempts), [
    [1, 'failed', 'exit_code', true],
    [2, 'succeeded', null, false],
  ]);
  const [first, second] = done.attempts as [Attempt, Attempt];
  assert.equal(first.exitCode, 3);
  assert.equal(first.reason, 'exited with code 3');
  assert.equal(first.node, done.node);
  assert.ok(first.startedAt && first.finishedAt <= second.startedAt!, 'one after the other');
  assert.deepEqual([first.firstLogSeq, first.lastLogSeq], [1, 1]);
  assert.deepEqual([second.firstLogSeq, second.lastLogSeq], [2, 4], 'the banner, attempt-2, done');
  assert.deepEqual(await containersGone(job.id), [], "each attempt's container is removed");

  const all = await g.call('GET', `/v1/jobs/${job.id}/logs`);
  assert.deepEqual(all.text.split('\n').slice(0, -1), [
    'attempt-1',
    `[gantry] attempt 2 of the job, on node "${done.node}"`,
    'attempt-2',
    'done',
  ]);
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?attempt=1`)).text, 'attempt-1\n');
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?attempt=2&stream=stdout`)).text, 'attempt-2\ndone\n');
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?attempt=2&tail=1`)).text, 'done\n');
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?attempt=3`)).status, 404);

  const sse = await readSse(`${g.url}/v1/jobs/${job.id}/logs?attempt=1`, ADMIN_TOKEN);
  assert.deepEqual(
    sse.events.filter((e) => e.event === 'log').map((e) => [e.id, (JSON.parse(e.data) as LogLine).line]),
    [['1', 'attempt-1']],
  );
  assert.equal(sse.events.at(-1)?.event, 'end');

  const metrics = (await g.call('GET', '/metrics')).text;
  assert.match(metrics, /^gantry_job_retries_total\{cause="exit_code"\} 1$/m);
  assert.match(metrics, /^gantry_job_attempts_total\{outcome="failed"\} 1$/m);
  assert.match(metrics, /^gantry_job_attempts_total\{outcome="succeeded"\} 1$/m);
});

test('following the running attempt live: the stream ends with that attempt, when the job is queued again', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'echo attempt-$GANTRY_ATTEMPT; sleep 1; echo late-$GANTRY_ATTEMPT; [ "$GANTRY_ATTEMPT" = 2 ]'],
    retry: { maxAttempts: 2, on: ['exit_code'] },
  });
  const live = await readSse(`${g.url}/v1/jobs/${job.id}/logs?attempt=1`, ADMIN_TOKEN);
  assert.deepEqual(
    live.events.filter((e) => e.event === 'log').map((e) => (JSON.parse(e.data) as LogLine).line),
    ['attempt-1', 'late-1'],
  );
  const end = JSON.parse(live.events.at(-1)!.data);
  assert.equal(live.events.at(-1)?.event, 'end');
  assert.equal(end.attempts[0].retried, true, 'the stream ended once attempt 1 had');
  const text = await g.call('GET', `/v1/jobs/${job.id}/logs?attempt=2&follow=true`);
  assert.deepEqual(text.text.split('\n').slice(1, -1), ['attempt-2', 'late-2'], 'after the banner');
  assert.equal((await g.job(job.id)).state, 'succeeded');
});

test('an exit code a rule fails ends the job at once, though a later rule would retry it', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'exit 2'],
    retry: {
      maxAttempts: 3,
      rules: [
        { cause: 'exit_code', exitCodes: [2], action: 'fail' },
        { cause: 'exit_code', action: 'retry' },
      ],
    },
  });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'failed');
  assert.equal(done.attempt, 1);
  assert.equal(done.reason, 'exited with code 2 (not retried: a rule for exit_code says fail)');
  assert.deepEqual(summary(done.attempts), [[1, 'failed', 'exit_code', false]]);
});

test('an OOM kill that a rule retries', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    // `tail` holds the whole newline-free input in memory: far past 8 MiB.
    command: firstFails('head -c 100m /dev/zero | tail >/dev/null'),
    resources: { memoryMiB: 8 },
    retry: { maxAttempts: 2, rules: [{ cause: 'oom', action: 'retry' }] },
  });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.deepEqual(summary(done.attempts), [
    [1, 'failed', 'oom', true],
    [2, 'succeeded', null, false],
  ]);
  assert.match(done.attempts[0]!.reason!, /^OOMKilled/);
});

test('a timeout that `on` retries', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: firstFails('sleep 60'),
    timeoutSeconds: 1,
    retry: { maxAttempts: 2, on: ['timeout'] },
  });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.deepEqual(summary(done.attempts), [
    [1, 'timed_out', 'timeout', true],
    [2, 'succeeded', null, false],
  ]);
});

test('an image that cannot be pulled: retried while attempts are left, then the job fails saying so', async (t) => {
  const g = await startGantry(t, { GANTRY_IMAGE_ALLOWLIST: 'local/*,127.0.0.1:1/*' });
  const job = await g.submit({
    // Nothing listens on port 1: the pull fails at once, every time.
    image: '127.0.0.1:1/missing:latest',
    command: ['true'],
    pullPolicy: 'always',
    retry: { maxAttempts: 2, rules: [{ cause: 'image_pull', action: 'retry' }] },
  });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'failed');
  assert.equal(done.attempt, 2);
  assert.deepEqual(summary(done.attempts), [
    [1, 'failed', 'image_pull', true],
    [2, 'failed', 'image_pull', false],
  ]);
  assert.match(done.reason!, /^pulling "127\.0\.0\.1:1\/missing:latest" failed: .*\(own attempts: 2 of 2 used, none left\)$/);
  assert.equal(done.attempts[0]!.startedAt, null, 'no container ever started');
  assert.equal(done.attempts[0]!.firstLogSeq, null);
});

test('backoff: the retried job waits in the queue until notBefore, and its next attempt starts no earlier', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: firstFails('exit 1'),
    retry: { maxAttempts: 2, on: ['exit_code'], backoff: { initialSeconds: 3 } },
  });
  const waiting = await g.waitFor(job.id, (j) => j.attempt === 2 || j.state === 'failed', 30_000);
  assert.equal(waiting.attempts[0]?.retried, true);
  assert.ok(waiting.notBefore, 'notBefore is set');
  assert.equal(Date.parse(waiting.notBefore) - Date.parse(waiting.attempts[0]!.finishedAt), 3000);
  assert.match(waiting.reason ?? '', /queued again as attempt 2 \(own attempts: 1 of 2 used\), not before /);
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.notBefore, waiting.notBefore);
  assert.ok(
    Date.parse(done.attempts[1]!.startedAt!) >= Date.parse(waiting.notBefore),
    `attempt 2 started at ${done.attempts[1]!.startedAt}, before its notBefore ${waiting.notBefore}`,
  );
});

test('a retry rule the schema refuses is a 422 naming the field', async (t) => {
  const g = await startGantry(t);
  const r = await g.call<{ errors: { field: string }[] }>('POST', '/v1/jobs', {
    body: { image: TEST_IMAGE, command: ['true'], retry: { maxAttempts: 2, rules: [{ cause: 'oom', exitCodes: [1], action: 'retry' }] } },
  });
  assert.equal(r.status, 422);
  assert.deepEqual(
    r.body.errors.map((e) => e.field),
    ['body.retry.rules.0.exitCodes'],
  );
});
