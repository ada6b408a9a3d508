// The container engine going away (a Docker upgrade or restart) is a fault
// of the host, never a job's failure. Each test runs Gantry against a
// private dockerd of its own and stops it for real, mid-job.
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDockerd } from '../helpers/dockerd.js';
import { startGantry, TEST_IMAGE } from '../helpers/gantry.js';

const isRoot = process.getuid?.() === 0;

/** A private dockerd and a Gantry on it; after the test Gantry closes first, so it is not removing containers while the engine is torn down. */
async function gantryOnItsOwnEngine(t: TestContext, o: { liveRestore?: boolean }) {
  const engine = await startDockerd(null, o);
  try {
    const g = await startGantry(null, { GANTRY_DOCKER_SOCKET: engine.socket });
    t.after(async () => {
      await g.app.close();
      await engine.destroy();
    });
    return { engine, g };
  } catch (err) {
    await engine.destroy();
    throw err;
  }
}

test('without live-restore: a job whose container died with the engine says so; a job submitted meanwhile waits queued and then runs', {
  skip: !isRoot && 'needs root to start a dockerd',
}, async (t) => {
  const { engine, g } = await gantryOnItsOwnEngine(t, {});
  const victim = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo up; sleep 60'] });
  await g.waitFor(victim.id, (j) => j.state === 'running');

  await engine.stop('SIGTERM');
  assert.equal((await g.call('GET', '/readyz', { token: null })).status, 503, 'not ready while the engine is away');
  const waiting = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo patient'] });
  const queued = await g.waitFor(waiting.id, (j) => (j.reason ?? '').includes('container engine'), 20_000);
  assert.equal(queued.state, 'queued', 'not failed: it waits for the engine');
  assert.match(queued.reason!, /waiting for the container engine, which is unreachable/);
  await sleep(1000);
  assert.equal((await g.job(waiting.id)).state, 'queued');

  await engine.restart();
  const lost = await g.waitFor(victim.id, undefined, 60_000);
  assert.equal(lost.state, 'failed');
  assert.match(lost.reason!, /stopped while the container engine was away .*enable live-restore/);
  const ran = await g.waitFor(waiting.id, undefined, 60_000);
  assert.equal(ran.state, 'succeeded', ran.reason ?? '');
  assert.equal(ran.result, 'patient');
});

test('with live-restore: a running job outlives an engine restart, its log complete and in order', {
  skip: !isRoot && 'needs root to start a dockerd',
}, async (t) => {
  const { engine, g } = await gantryOnItsOwnEngine(t, { liveRestore: true });
  const job = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 1; done'] });
  await g.waitFor(job.id, (j) => j.state === 'running');
  await sleep(1500);
  await engine.restart();
  const done = await g.waitFor(job.id, undefined, 60_000);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.equal(done.exitCode, 0);
  const log = await g.call('GET', `/v1/jobs/${job.id}/logs`);
  assert.equal(log.text, Array.from({ length: 8 }, (_, i) => `line ${i + 1}\n`).join(''), 'no line lost or repeated');
});
