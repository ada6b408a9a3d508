import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { containersOf, docker, spawnGantry, startGantry, tempDir } from '../helpers/gantry.js';
import { pushTestImage, startRegistry, startStallingProxy } from '../helpers/registry.js';

const creds = { user: 'gantry', password: 's3cret-pass' };

/** An image in a loopback registry behind a stalling proxy (its pull held until released), removed after the test. */
async function stalledImage(t: TestContext, repo: string) {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  await pushTestImage(reg, repo);
  const proxy = await startStallingProxy(reg);
  t.after(() => proxy.stop());
  const ref = `${proxy.host}/${repo}`;
  t.after(() =>
    docker
      .getImage(ref)
      .remove()
      .catch(() => undefined),
  );
  return { proxy, ref };
}

test('pulls from a real loopback registry: the job says `pulling`, then runs', async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const ref = await pushTestImage(reg, 'ml/busybox:1');
  const g = await startGantry(t, { GANTRY_IMAGE_ALLOWLIST: `${reg.host}/ml/*,local/*`, GANTRY_MAX_RUNNING: '1' });
  // Hold the only run slot so the pull job waits while we subscribe to it.
  const blocker = await g.submit({ image: 'local/busybox:latest', command: ['sleep', '300'] });
  await g.waitFor(blocker.id, (j) => j.state === 'running');
  const job = await g.submit({ image: ref, command: ['echo', 'pulled and ran'] });
  const states: string[] = [];
  g.app.gantry.events.subscribe(job.id, 'status', (j) => states.push(j.state));
  await g.call('POST', `/v1/jobs/${blocker.id}/cancel`);
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.equal(done.result, 'pulled and ran');
  assert.deepEqual([...new Set(states)], ['pulling', 'starting', 'running', 'succeeded']);
  t.after(() =>
    docker
      .getImage(ref)
      .remove()
      .catch(() => undefined),
  );
});

test("a missing tag fails the job with the registry's own reason", async (t) => {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  await pushTestImage(reg, 'ml/busybox:1');
  const g = await startGantry(t, { GANTRY_IMAGE_ALLOWLIST: `${reg.host}/ml/*` });
  const job = await g.submit({ image: `${reg.host}/ml/busybox:nope`, command: ['true'] });
  const done = await g.waitFor(job.id, undefined, 60_000);
  assert.equal(done.state, 'failed');
  assert.match(done.reason!, /manifest unknown|not found/i);
});

test("private registry: refused without credentials, pulled with the operator's credentials", async (t) => {
  const reg = await startRegistry(creds);
  t.after(() => reg.stop());
  const ref = await pushTestImage(reg, 'ml/private:1', creds);
  t.after(() =>
    docker
      .getImage(ref)
      .remove()
      .catch(() => undefined),
  );

  const anon = await startGantry(t, { GANTRY_IMAGE_ALLOWLIST: `${reg.host}/ml/*` });
  const refused = await anon.submit({ image: ref, command: ['true'] });
  const r = await anon.waitFor(refused.id, undefined, 60_000);
  assert.equal(r.state, 'failed');
  assert.match(r.reason!, /no basic auth credentials|unauthorized|authentication required/i);

  const authFile = path.join(tempDir(), 'registries.json');
  fs.writeFileSync(authFile, JSON.stringify({ [reg.host]: { username: creds.user, password: creds.password } }));
  const withCreds = await startGantry(t, { GANTRY_IMAGE_ALLOWLIST: `${reg.host}/ml/*`, GANTRY_REGISTRY_AUTH_FILE: authFile });
  const job = await withCreds.submit({ image: ref, command: ['echo', 'private ok'], pullPolicy: 'always' });
  const done = await withCreds.waitFor(job.id, undefined, 60_000);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.equal(done.result, 'private ok');
  // The job itself never carries credentials.
  assert.ok(!JSON.stringify(done).includes(creds.password));
});

test('a bind source swapped for a symlink while the image is pulled is refused before the container is created', async (t) => {
  const { proxy, ref } = await stalledImage(t, 'ml/busybox:swap');

  const allowed = tempDir('gantry-allowed-');
  const secret = tempDir('gantry-secret-'); // outside the allowlist
  fs.writeFileSync(path.join(secret, 'key'), 'not for jobs');
  const source = path.join(allowed, 'data');
  fs.mkdirSync(source);
  const g = await startGantry(t, { GANTRY_IMAGE_ALLOWLIST: `${proxy.host}/ml/*`, GANTRY_MOUNT_ALLOWLIST: allowed });
  const job = await g.submit({ image: ref, command: ['cat', '/data/key'], mounts: [{ source, target: '/data', readOnly: true }] });
  // The policy passed at submit and at start; now the pull is held.
  await proxy.stalled;
  assert.equal((await g.waitFor(job.id, (j) => j.state === 'pulling')).state, 'pulling');
  fs.rmdirSync(source);
  fs.symlinkSync(secret, source);
  proxy.release();

  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'failed', `the job ran with ${done.result ?? 'no output'}`);
  assert.match(
    done.reason!,
    /refused by policy at start: body\.mounts\.0\.source: host path ".*gantry-secret-.*" is outside GANTRY_MOUNT_ALLOWLIST/,
  );
  assert.deepEqual(await containersOf(job.id), []);
});

test('Gantry killed during an image pull: after the restart the job pulls again as the same attempt and succeeds', async (t) => {
  const { proxy, ref } = await stalledImage(t, 'ml/busybox:restart');
  const dir = tempDir();
  const env = { GANTRY_IMAGE_ALLOWLIST: `${proxy.host}/ml/*` };
  let g = await spawnGantry(dir, env);
  t.after(() => g.stop('SIGKILL'));
  const job = await g.submit({ image: ref, command: ['echo', 'pulled after the restart'] });
  await proxy.stalled;
  await g.waitFor(job.id, (j) => j.state === 'pulling');
  await g.stop('SIGKILL');
  proxy.release();
  g = await spawnGantry(dir, env);
  const done = await g.waitFor(job.id, undefined, 60_000);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.equal(done.result, 'pulled after the restart');
  assert.equal(done.attempt, 1, 'the same attempt: nothing of it had run');
  assert.deepEqual(
    done.attempts.map((a) => a.outcome),
    ['succeeded'],
    'one attempt, the one that ran',
  );
});
