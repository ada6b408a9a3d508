import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { containersGone, containersOf, docker, spawnGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

const numbers = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));

test('Gantry killed with SIGKILL mid-job: the job ends succeeded after restart, logs exact, earlier jobs kept', async (t) => {
  const dir = tempDir();
  let g = await spawnGantry(dir);
  t.after(() => g.stop('SIGKILL'));
  const earlier = await g.submit({ image: TEST_IMAGE, command: ['echo', 'earlier'] });
  await g.waitFor(earlier.id);
  // 300 lines over ~6 s: Gantry dies in the middle of them.
  const job = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'for i in $(seq 1 300); do echo line $i; echo err $i >&2; sleep 0.02; done'],
  });
  await g.waitFor(job.id, (j) => j.state === 'running');
  await sleep(1500);
  const partial = (await g.call('GET', `/v1/jobs/${job.id}/logs`)).text.split('\n').filter(Boolean);
  assert.ok(partial.length > 10 && partial.length < 600, `some but not all lines before the kill (${partial.length})`);
  await g.stop('SIGKILL');
  const [c] = await containersOf(job.id);
  assert.equal(c?.State, 'running', 'the container kept running without Gantry');

  g = await spawnGantry(dir);
  const done = await g.waitFor(job.id, undefined, 60_000);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.result, 'line 300');
  const out = (await g.call('GET', `/v1/jobs/${job.id}/logs?stream=stdout`)).text.split('\n').filter(Boolean);
  assert.deepEqual(
    out,
    numbers(1, 300).map((n) => `line ${n}`),
    'no stdout line lost or duplicated',
  );
  const err = (await g.call('GET', `/v1/jobs/${job.id}/logs?stream=stderr`)).text.split('\n').filter(Boolean);
  assert.deepEqual(
    err,
    numbers(1, 300).map((n) => `err ${n}`),
    'no stderr line lost or duplicated',
  );
  const seqs = (await g.call<string>('GET', `/v1/jobs/${job.id}/logs`, { headers: { accept: 'text/event-stream' } })).text
    .split('\n')
    .filter((l) => l.startsWith('id: '))
    .map((l) => Number(l.slice(4)));
  assert.deepEqual(
    seqs,
    Array.from({ length: 600 }, (_, i) => i + 1),
    'sequence numbers stay contiguous across the restart',
  );
  assert.equal((await g.job(earlier.id)).state, 'succeeded');
  assert.deepEqual(await containersGone(job.id), []);
});

test('a job whose container finished while Gantry was down ends with its real exit code and full log', async (t) => {
  const dir = tempDir();
  let g = await spawnGantry(dir);
  t.after(() => g.stop('SIGKILL'));
  const job = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'seq 1 50; sleep 1; seq 51 100; exit 7'] });
  await g.waitFor(job.id, (j) => j.state === 'running');
  await g.stop('SIGKILL');
  await sleep(2500);
  const [c] = await containersOf(job.id);
  assert.equal(c?.State, 'exited');
  g = await spawnGantry(dir);
  const done = await g.waitFor(job.id);
  assert.deepEqual([done.state, done.exitCode], ['failed', 7]);
  assert.deepEqual((await g.call('GET', `/v1/jobs/${job.id}/logs`)).text.split('\n').filter(Boolean), numbers(1, 100));
});

test('SIGTERM stops Gantry gracefully and leaves running containers alone', async (t) => {
  const dir = tempDir();
  let g = await spawnGantry(dir);
  t.after(() => g.stop('SIGKILL'));
  const job = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'sleep 2; echo finished'] });
  await g.waitFor(job.id, (j) => j.state === 'running');
  const code = await g.stop('SIGTERM');
  assert.equal(code, 0);
  const [c] = await containersOf(job.id);
  assert.equal(c?.State, 'running');
  g = await spawnGantry(dir);
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.result, 'finished');
});

test("a container removed behind Gantry's back ends its job failed with a reason", async (t) => {
  const dir = tempDir();
  let g = await spawnGantry(dir);
  t.after(() => g.stop('SIGKILL'));
  const job = await g.submit({ image: TEST_IMAGE, command: ['sleep', '300'] });
  await g.waitFor(job.id, (j) => j.state === 'running');
  await g.stop('SIGKILL');
  const [c] = await containersOf(job.id);
  await docker.getContainer(c!.Id).remove({ force: true });
  g = await spawnGantry(dir);
  const done = await g.job(job.id);
  assert.equal(done.state, 'failed');
  assert.match(done.reason!, /vanished/);
});

test('a labelled container unknown to the store is reported, never killed', async (t) => {
  const stranger = await docker.createContainer({
    Image: TEST_IMAGE,
    Cmd: ['sleep', '30'],
    Labels: { 'dev.gantry.managed': 'true', 'dev.gantry.job-id': 'not-in-this-store' },
    HostConfig: { NetworkMode: 'none' },
  });
  await stranger.start();
  t.after(() => stranger.remove({ force: true }));
  const g = await spawnGantry(tempDir(), { GANTRY_LOG_LEVEL: 'warn' });
  t.after(() => g.stop('SIGKILL'));
  await sleep(300);
  assert.match(g.output(), /unknown to its store; left alone/);
  assert.equal((await stranger.inspect()).State.Running, true);
});
