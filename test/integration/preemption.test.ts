/**
 * Preemption against the real engine, on a static inventory with the env
 * driver: a preemptible job is told in its notice file, gets SIGTERM, goes
 * back to the queue as a free attempt and later finishes; the job it gave
 * way to runs meanwhile. Both rules (a higher priority; a team borrowing
 * beyond its share while another is within its own), and the jobs that are
 * never preempted (not preemptible; an equal priority with no share owed).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../../src/model/job.js';
import { ADMIN_TOKEN, client, containersGone, spawnGantry, startGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';
import { readSse } from '../helpers/sse.js';

const GPU_A = 'GPU-9a1e0000-0000-4000-8000-0000000000a1';
const GPU_B = 'GPU-9a1e0000-0000-4000-8000-0000000000b2';

/**
 * Attempt 1 runs until SIGTERM, then prints its notice file and exits 143;
 * later attempts print their number and succeed. The loop sleeps briefly
 * so the shell runs its trap at once.
 */
const PREEMPTIBLE = [
  'sh',
  '-c',
  'if [ "$GANTRY_ATTEMPT" != 1 ]; then echo "attempt $GANTRY_ATTEMPT done"; exit 0; fi; ' +
    'trap \'echo "got TERM"; cat "$GANTRY_PREEMPT_NOTICE_FILE"; exit 143\' TERM; echo started; while :; do sleep 0.1; done',
];
/** Runs until the gate folder holds `open`. */
const gated = (gate: string) => ({
  command: ['sh', '-c', 'while [ ! -e /gate/open ]; do sleep 0.05; done; echo finished'],
  mounts: [{ source: gate, target: '/gate' }],
});

test('a higher priority job preempts a preemptible one: notice, SIGTERM, a free attempt back in the queue that finishes after', async (t) => {
  const gate = tempDir('gantry-gate-');
  const notices = tempDir('gantry-notices-');
  t.after(() => fs.writeFileSync(path.join(gate, 'open'), ''));
  const g = await startGantry(t, {
    GANTRY_GPUS: `${GPU_A}:81920`,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_NOTICE_DIR: notices,
  });
  const low = await g.submit({ image: TEST_IMAGE, command: PREEMPTIBLE, gpus: { count: 1 }, preemptible: true, priority: 0 });
  await g.waitFor(low.id, (j) => j.state === 'running');
  const sse = readSse(`${g.url}/v1/jobs/${low.id}/logs`, ADMIN_TOKEN);

  const high = await g.submit({ image: TEST_IMAGE, ...gated(gate), gpus: { count: 1 }, priority: 10 });
  const running = await g.waitFor(high.id, (j) => j.state === 'running', 30_000);
  assert.deepEqual(running.gpus, [GPU_A], 'the high priority job got the preempted GPU');
  const requeued = await g.job(low.id);
  assert.equal(requeued.state, 'queued');
  assert.equal(requeued.attempt, 2);
  assert.equal(requeued.waiting?.code, 'gpus');
  const [first] = requeued.attempts;
  assert.equal(first?.cause, 'preempted');
  assert.equal(first?.outcome, 'failed');
  assert.equal(first?.retried, true);
  assert.equal(first?.exitCode, 143, 'it exited on SIGTERM, in its grace period');
  assert.match(first?.reason ?? '', new RegExp(`preempted for job ${high.id}, of a higher priority \\(10 > 0\\)`));

  const attempt1 = (await g.call('GET', `/v1/jobs/${low.id}/logs?attempt=1`)).text.split('\n');
  assert.equal(attempt1[0], 'started');
  assert.match(attempt1[1] ?? '', /^\[gantry\] stopping attempt 1 \(preempted\): preempted for job .*; SIGTERM now, SIGKILL at /);
  assert.equal(attempt1[2], 'got TERM');
  const notice = JSON.parse(attempt1[3] ?? '') as { reason: string; signalAt: string; killAt: string; attempt: number };
  assert.equal(notice.attempt, 1);
  assert.equal(notice.reason, first?.reason);
  assert.equal(Date.parse(notice.killAt) - Date.parse(notice.signalAt), 2000, 'the grace period (GANTRY_STOP_GRACE_SECONDS=2)');
  assert.deepEqual(await containersGone(low.id), [], 'the preempted container is removed');
  const left = (fs.readdirSync(notices, { recursive: true }) as string[]).filter((f) => f.includes(low.id));
  assert.deepEqual(left, [], 'the notice folder goes with it');

  fs.writeFileSync(path.join(gate, 'open'), '');
  assert.equal((await g.waitFor(high.id)).state, 'succeeded');
  const done = await g.waitFor(low.id);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.deepEqual(
    done.attempts.map((a) => [a.attempt, a.outcome, a.cause]),
    [
      [1, 'failed', 'preempted'],
      [2, 'succeeded', null],
    ],
  );
  const events = (await sse).events.filter((e) => e.event === 'log').map((e) => (JSON.parse(e.data) as { line: string }).line);
  assert.ok(
    events.some((l) => l.startsWith('[gantry] stopping attempt 1 (preempted)')),
    'the SSE stream records the preemption',
  );
  assert.ok(events.includes(`[gantry] attempt 2 of the job, on node "${done.node}"`));

  const metrics = (await g.call('GET', '/metrics')).text;
  assert.match(metrics, /^gantry_job_preemptions_total\{rule="priority"\} 1$/m);
  assert.match(metrics, /^gantry_job_preemptions_total\{rule="borrowed"\} 0$/m);
  assert.match(metrics, /^gantry_job_retries_total\{cause="preempted"\} 1$/m);
});

test('what is never preempted: a job that is not preemptible, and a preemptible one of an equal priority with no share owed', async (t) => {
  const gate = tempDir('gantry-gate-');
  t.after(() => fs.writeFileSync(path.join(gate, 'open'), ''));
  const g = await startGantry(t, { GANTRY_GPUS: `${GPU_A}:81920,${GPU_B}:81920`, GANTRY_GPU_DRIVER: 'env', GANTRY_MOUNT_ALLOWLIST: gate });
  const fixed = await g.submit({ image: TEST_IMAGE, ...gated(gate), gpus: { count: 1 }, priority: -5 });
  const peer = await g.submit({ image: TEST_IMAGE, ...gated(gate), gpus: { count: 1 }, preemptible: true });
  await g.waitFor(fixed.id, (j) => j.state === 'running');
  await g.waitFor(peer.id, (j) => j.state === 'running');
  const waiter = await g.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } });
  await sleep(1500);
  const seen = await g.job(waiter.id);
  assert.equal(seen.state, 'queued');
  assert.equal(seen.waiting?.code, 'gpus');
  assert.doesNotMatch(seen.reason ?? '', /preempting/);
  for (const id of [fixed.id, peer.id]) assert.equal((await g.job(id)).state, 'running', id);
  fs.writeFileSync(path.join(gate, 'open'), '');
  assert.equal((await g.waitFor(waiter.id)).state, 'succeeded');
  assert.match((await g.call('GET', '/metrics')).text, /^gantry_job_preemptions_total\{rule="priority"\} 0$/m);
});

test('a team borrowing beyond its share gives back what it borrowed to a team within its share, and cannot take it again while that team is owed', async (t) => {
  const dir = tempDir();
  const gate = tempDir('gantry-gate-');
  t.after(() => fs.writeFileSync(path.join(gate, 'open'), ''));
  const quotas = path.join(dir, 'quotas.json');
  fs.writeFileSync(
    quotas,
    JSON.stringify([
      { name: 'vision', owners: ['ann'], gpus: 1, borrowGpus: 1 },
      { name: 'speech', owners: ['sam'], gpus: 1 },
    ]),
  );
  const tokens = { ann: 'ann-token-0123456789abcdef', sam: 'sam-token-0123456789abcdef' };
  const g = await startGantry(t, {
    GANTRY_GPUS: `${GPU_A}:81920,${GPU_B}:81920`,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_QUOTAS_FILE: quotas,
    GANTRY_TOKENS_FILE: tokensFile(
      (['ann', 'sam'] as const).map((owner) => ({ owner, scopes: ['submit', 'read', 'cancel'], token: tokens[owner] })),
    ),
  });
  const [ann, sam] = [client(g.url, tokens.ann), client(g.url, tokens.sam)];
  const own = await ann.submit({ image: TEST_IMAGE, command: PREEMPTIBLE, gpus: { count: 1 }, preemptible: true });
  await ann.waitFor(own.id, (j) => j.state === 'running');
  const borrowed = await ann.submit({ image: TEST_IMAGE, command: PREEMPTIBLE, gpus: { count: 1 }, preemptible: true });
  await ann.waitFor(borrowed.id, (j) => j.state === 'running');

  const theirs = await sam.submit({ image: TEST_IMAGE, ...gated(gate), gpus: { count: 1 } });
  await sam.waitFor(theirs.id, (j) => j.state === 'running', 30_000);
  const back: Job = await ann.job(borrowed.id);
  assert.equal(back.state, 'queued', 'the job started last, on the borrowed GPU, was preempted');
  assert.equal(back.attempts[0]?.cause, 'preempted');
  assert.match(
    back.attempts[0]?.reason ?? '',
    /^preempted for a job with a better claim: team "vision" holds more than its 1 GPUs \(it borrows\), and the other job's team is within its share/,
  );
  assert.ok(
    !back.attempts[0]!.reason!.includes('speech') && !back.attempts[0]!.reason!.includes(theirs.id),
    "no other owner's team or job is named",
  );
  assert.equal((await ann.job(own.id)).state, 'running', 'the job within its own share keeps running');
  await sleep(500);
  const waits = await ann.job(borrowed.id);
  assert.equal(waits.state, 'queued');
  assert.equal(waits.waiting?.code, 'quota', 'it may not borrow back while speech holds its share');
  assert.match((await g.call('GET', '/metrics')).text, /^gantry_job_preemptions_total\{rule="borrowed"\} 1$/m);

  fs.writeFileSync(path.join(gate, 'open'), '');
  assert.equal((await sam.waitFor(theirs.id)).state, 'succeeded');
  assert.equal((await ann.waitFor(borrowed.id)).state, 'succeeded', 'it runs again once the GPU is free');
  assert.equal((await ann.call('POST', `/v1/jobs/${own.id}/cancel`)).status, 202);
  assert.equal((await ann.waitFor(own.id)).state, 'cancelled');
});

test('a preemption outlives a kill -9 of Gantry during the grace period: after the restart the job is requeued as preempted, not failed', async (t) => {
  const gate = tempDir('gantry-gate-');
  t.after(() => fs.writeFileSync(path.join(gate, 'open'), ''));
  const dir = tempDir();
  const env = {
    GANTRY_GPUS: `${GPU_A}:81920`,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_NOTICE_DIR: tempDir('gantry-notices-'),
    GANTRY_STOP_GRACE_SECONDS: '30',
  };
  let g = await spawnGantry(dir, env);
  t.after(() => g.stop('SIGKILL'));
  // Attempt 1 takes 3 s to checkpoint after SIGTERM, then exits 143: Gantry is down by then.
  const slow = [
    'sh',
    '-c',
    'if [ "$GANTRY_ATTEMPT" != 1 ]; then echo "attempt $GANTRY_ATTEMPT done"; exit 0; fi; ' +
      "trap 'echo checkpointing; sleep 3; exit 143' TERM; echo started; while :; do sleep 0.1; done",
  ];
  const low = await g.submit({ image: TEST_IMAGE, command: slow, gpus: { count: 1 }, preemptible: true });
  await g.waitFor(low.id, (j) => j.state === 'running');
  const high = await g.submit({ image: TEST_IMAGE, ...gated(gate), gpus: { count: 1 }, priority: 10 });
  await g.waitFor(high.id, (j) => /preempting job/.test(j.reason ?? ''), 15_000);
  await g.stop('SIGKILL');
  await sleep(5000);

  // Back with a second card: the waiting job starts there and needs no preemption any more, so
  // only the notice file left on disk says that the container's exit was a preemption's.
  g = await spawnGantry(dir, { ...env, GANTRY_GPUS: `${GPU_A}:81920,${GPU_B}:81920` });
  const running = await g.waitFor(high.id, (j) => j.state === 'running', 30_000);
  assert.deepEqual(running.gpus, [GPU_B]);
  const done = await g.waitFor(low.id);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.deepEqual(
    done.attempts.map((a) => [a.attempt, a.outcome, a.cause, a.exitCode]),
    [
      [1, 'failed', 'preempted', 143],
      [2, 'succeeded', null, 0],
    ],
  );
  assert.equal((await g.call('GET', `/v1/jobs/${low.id}/logs?attempt=1`)).text.split('\n').includes('checkpointing'), true);
  fs.writeFileSync(path.join(gate, 'open'), '');
  assert.equal((await g.waitFor(high.id)).state, 'succeeded');
});
