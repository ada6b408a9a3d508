import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { client, containersGone, containersOf, docker, startGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sh', '-c', script], ...extra });

async function allContainerIds(): Promise<Set<string>> {
  return new Set((await docker.listContainers({ all: true })).map((c) => c.Id));
}

test('a job that prints and exits 3 ends failed with exit code 3; `true` succeeds', async (t) => {
  const g = await startGantry(t);
  const bad = await g.submit(sh('echo about to fail; exit 3'));
  assert.equal(bad.state, 'queued');
  const good = await g.submit({ image: TEST_IMAGE, command: ['true'] });
  const b = await g.waitFor(bad.id);
  assert.equal(b.state, 'failed');
  assert.equal(b.exitCode, 3);
  assert.match(b.reason!, /exited with code 3/);
  assert.equal(b.result, 'about to fail');
  assert.ok(b.startedAt && b.finishedAt && b.createdAt <= b.startedAt && b.startedAt <= b.finishedAt);
  const ok = await g.waitFor(good.id);
  assert.equal(ok.state, 'succeeded');
  assert.equal(ok.exitCode, 0);
  assert.equal(ok.reason, null);
  assert.deepEqual(await containersGone(good.id), [], 'the container is removed once its logs are stored');
});

test('submit answers 201 with Location and the accepted spec', async (t) => {
  const g = await startGantry(t);
  const r = await g.call<{ id: string; spec: unknown; owner: string }>('POST', '/v1/jobs', {
    body: sh('true', { labels: { team: 'ml' }, name: 'hello-job', resources: { memoryMiB: 64 } }),
  });
  assert.equal(r.status, 201);
  assert.equal(r.headers.location, `/v1/jobs/${r.body.id}`);
  assert.equal(r.body.owner, 'admin');
  assert.deepEqual(r.body.spec, sh('true', { labels: { team: 'ml' }, name: 'hello-job', resources: { memoryMiB: 64 } }));
  assert.ok(r.headers['x-request-id']);
  await g.waitFor(r.body.id);
});

test('every refusal answers 4xx naming the field, and creates no container', async (t) => {
  const allowed = tempDir('gantry-allowed-');
  const secret = tempDir('gantry-secret-');
  fs.symlinkSync(secret, path.join(allowed, 'link'));
  const g = await startGantry(t, { GANTRY_MOUNT_ALLOWLIST: allowed });
  const before = await allContainerIds();
  const cases: [Record<string, unknown>, number, string][] = [
    [sh('true', { privileged: true }), 422, 'body.privileged'],
    [sh('true', { capAdd: ['SYS_ADMIN'] }), 422, 'body.capAdd'],
    [sh('true', { devices: ['/dev/sda'] }), 422, 'body.devices'],
    [sh('true', { hostConfig: { NetworkMode: 'host' } }), 422, 'body.hostConfig'],
    [sh('true', { pidMode: 'host' }), 422, 'body.pidMode'],
    [sh('true', { ipcMode: 'host' }), 422, 'body.ipcMode'],
    [sh('true', { utsMode: 'host' }), 422, 'body.utsMode'],
    [sh('true', { network: 'host' }), 422, 'body.network'],
    [sh('true', { network: 'bridge' }), 422, 'body.network'],
    [sh('true', { image: 'docker.io/library/alpine:3' }), 422, 'body.image'],
    [sh('true', { env: { NVIDIA_VISIBLE_DEVICES: 'all' } }), 422, 'body.env.NVIDIA_VISIBLE_DEVICES'],
    [sh('true', { mounts: [{ source: '/var/run/docker.sock', target: '/var/run/docker.sock' }] }), 422, 'body.mounts.0.source'],
    [sh('true', { mounts: [{ source: '/etc', target: '/etc2' }] }), 422, 'body.mounts.0.source'],
    [sh('true', { mounts: [{ source: path.join(allowed, 'link'), target: '/x' }] }), 422, 'body.mounts.0.source'],
    [sh('true', { mounts: [{ source: `${allowed}/../${path.basename(secret)}`, target: '/x' }] }), 422, 'body.mounts.0.source'],
    [sh('true', { mounts: [{ source: allowed, target: '/x', propagation: 'shared' }] }), 422, 'body.mounts.0.propagation'],
    [sh('true', { user: '0' }), 422, 'body.user'],
    [sh('true', { user: '1000:0' }), 422, 'body.user'],
    [sh('true', { user: 'root' }), 422, 'body.user'],
    [sh('true', { user: '1000' }), 422, 'body.user'],
    [sh('true', { secrets: [{ name: 'hf-token', env: 'HF_TOKEN' }] }), 422, 'body.secrets.0.name'],
    [sh('true', { secrets: [{ name: '../../etc/shadow', env: 'X' }] }), 422, 'body.secrets.0.name'],
    [sh('true', { secrets: [{ name: 'x', env: 'NVIDIA_VISIBLE_DEVICES' }] }), 422, 'body.secrets.0.env'],
    [sh('true', { secrets: [{ name: 'x', file: '/proc/self/mem' }] }), 422, 'body.secrets.0.file'],
    [sh('true', { privateEnv: { NVIDIA_VISIBLE_DEVICES: 'all-of-them' } }), 422, 'body.privateEnv.NVIDIA_VISIBLE_DEVICES'],
    [sh('true', { privateEnv: { KEY: 'abc' } }), 422, 'body.privateEnv.KEY'],
    [sh('true', { env: { KEY: '1' }, privateEnv: { KEY: 'abcd' } }), 422, 'body.privateEnv.KEY'],
    [sh('true', { command: 'not-an-array' }), 422, 'body.command'],
    [{ command: ['true'] }, 422, 'body.image'],
  ];
  for (const [body, status, field] of cases) {
    const r = await g.call<{ errors?: { field: string }[]; type: string }>('POST', '/v1/jobs', { body });
    assert.equal(r.status, status, `${JSON.stringify(body)} → ${r.text}`);
    assert.match(String(r.headers['content-type']), /application\/problem\+json/);
    assert.ok(
      r.body.errors?.some((e) => e.field === field),
      `${field} named in ${r.text}`,
    );
  }
  const notJson = await g.call('POST', '/v1/jobs', { body: 'image=x', headers: { 'content-type': 'text/plain' } });
  assert.equal(notJson.status, 415);
  const tooBig = await g.call('POST', '/v1/jobs', { body: sh('true', { env: { BIG: 'x'.repeat(2 * 1024 * 1024) } }) });
  assert.equal(tooBig.status, 413);
  const list = await g.call<{ items: unknown[] }>('GET', '/v1/jobs');
  assert.equal(list.body.items.length, 0, 'no job was recorded');
  const after = await allContainerIds();
  assert.deepEqual(
    [...after].filter((id) => !before.has(id)),
    [],
    'no container was created',
  );
});

test('auth: 401 with WWW-Authenticate, scopes give 403, other owners get 404', async (t) => {
  const tokens = { alice: 'alice-token-0123456789abcdef', bob: 'bob-token-0123456789abcdef', reader: 'reader-token-0123456789abcd' };
  const file = tokensFile([
    { owner: 'alice', scopes: ['submit', 'read', 'cancel'], token: tokens.alice },
    { owner: 'bob', scopes: ['submit', 'read', 'cancel'], token: tokens.bob },
    { owner: 'alice', scopes: ['read'], token: tokens.reader },
  ]);
  const g = await startGantry(t, { GANTRY_TOKENS_FILE: file });
  const none = await g.call('GET', '/v1/jobs', { token: null });
  assert.equal(none.status, 401);
  assert.match(String(none.headers['www-authenticate']), /^Bearer/);
  const wrong = await g.call('GET', '/v1/jobs', { token: 'nope' });
  assert.equal(wrong.status, 401);
  assert.match(String(wrong.headers['www-authenticate']), /invalid_token/);
  const unauthSubmit = await g.call('POST', '/v1/jobs', { token: null, body: { privileged: true } });
  assert.equal(unauthSubmit.status, 401, 'auth runs before validation');

  const alice = client(g.url, tokens.alice);
  const bob = client(g.url, tokens.bob);
  const reader = client(g.url, tokens.reader);
  const job = await alice.submit(sh('true'));
  assert.equal(job.owner, 'alice');
  assert.equal((await reader.call('GET', `/v1/jobs/${job.id}`)).status, 200, 'same owner, read scope');
  assert.equal((await reader.call('POST', '/v1/jobs', { body: sh('true') })).status, 403);
  assert.equal((await reader.call('POST', `/v1/jobs/${job.id}/cancel`)).status, 403);
  assert.equal((await bob.call('GET', `/v1/jobs/${job.id}`)).status, 404);
  assert.equal((await bob.call('POST', `/v1/jobs/${job.id}/cancel`)).status, 404);
  assert.equal((await bob.call('GET', `/v1/jobs/${job.id}/logs`)).status, 404);
  const bobList = await bob.call<{ items: unknown[] }>('GET', '/v1/jobs');
  assert.equal(bobList.body.items.length, 0);
  const adminView = await g.call('GET', `/v1/jobs/${job.id}`);
  assert.equal(adminView.status, 200, 'admin sees every owner');
  await alice.waitFor(job.id);
  // healthz/readyz need no token
  assert.equal((await g.call('GET', '/healthz', { token: null })).status, 200);
  assert.equal((await g.call('GET', '/readyz', { token: null })).status, 200);
});

test('Idempotency-Key: same body → same job (even racing), another body → 422', async (t) => {
  const g = await startGantry(t);
  const key = { 'idempotency-key': 'dag1/run1/task1/-1' };
  const spec = sh('echo once');
  const results = await Promise.all(
    Array.from({ length: 8 }, () => g.call<{ id: string }>('POST', '/v1/jobs', { body: spec, headers: key })),
  );
  const ids = new Set(results.map((r) => r.body.id));
  assert.equal(ids.size, 1, 'one job for all racing requests');
  assert.deepEqual(results.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 200, 200, 201]);
  const [id] = [...ids];
  // key order in the body does not matter
  const reordered = await g.call<{ id: string }>('POST', '/v1/jobs', {
    body: `{"command":["sh","-c","echo once"],"image":"${TEST_IMAGE}"}`,
    headers: key,
  });
  assert.equal(reordered.status, 200);
  assert.equal(reordered.body.id, id);
  const changed = await g.call<{ errors: { field: string }[] }>('POST', '/v1/jobs', { body: sh('echo twice'), headers: key });
  assert.equal(changed.status, 422);
  assert.equal(changed.body.errors[0]!.field, 'headers.idempotency-key');
  await g.waitFor(id!);
  const all = await g.call<{ items: unknown[] }>('GET', '/v1/jobs');
  assert.equal(all.body.items.length, 1);
});

test('cancel: a running job ends cancelled (idempotently); a queued job is never started', async (t) => {
  const g = await startGantry(t, { GANTRY_MAX_RUNNING: '1', GANTRY_STOP_GRACE_SECONDS: '1' });
  const running = await g.submit(sh('echo started; sleep 300'));
  const queued = await g.submit(sh('echo should never run'));
  await g.waitFor(running.id, (j) => j.state === 'running');
  const q = await g.job(queued.id);
  assert.equal(q.state, 'queued');
  assert.equal(q.position, 0);
  assert.match(q.reason!, /run slot/);

  const cq = await g.call<{ state: string }>('POST', `/v1/jobs/${queued.id}/cancel`);
  assert.equal(cq.status, 202);
  assert.equal(cq.body.state, 'cancelled');
  const t0 = Date.now();
  const c1 = await g.call('POST', `/v1/jobs/${running.id}/cancel`);
  const c2 = await g.call('POST', `/v1/jobs/${running.id}/cancel`);
  assert.equal(c1.status, 202);
  assert.equal(c2.status, 202);
  const done = await g.waitFor(running.id);
  assert.equal(done.state, 'cancelled');
  assert.ok(Date.now() - t0 < 15_000, 'SIGTERM is honoured through the init process, well before a SIGKILL fallback matters');
  const again = await g.call<{ state: string }>('POST', `/v1/jobs/${running.id}/cancel`);
  assert.equal(again.body.state, 'cancelled');
  const qj = await g.job(queued.id);
  assert.equal(qj.state, 'cancelled');
  assert.equal(qj.startedAt, null);
  assert.deepEqual(await containersOf(queued.id), []);
  const logs = await g.call('GET', `/v1/jobs/${queued.id}/logs`);
  assert.equal(logs.text, '');
});

test('cancel escalates to SIGKILL for a command that ignores SIGTERM', async (t) => {
  const g = await startGantry(t, { GANTRY_STOP_GRACE_SECONDS: '1' });
  const job = await g.submit(sh("trap '' TERM; echo ready; while true; do sleep 1; done"));
  await g.waitFor(job.id, (j) => j.state === 'running');
  await new Promise((r) => setTimeout(r, 300));
  await g.call('POST', `/v1/jobs/${job.id}/cancel`);
  const done = await g.waitFor(job.id, undefined, 30_000);
  assert.equal(done.state, 'cancelled');
  assert.equal(done.exitCode, 137, 'killed by SIGKILL after the grace period');
});

test('a 2 s timeout on sleep 300 ends timed_out', async (t) => {
  const g = await startGantry(t, { GANTRY_STOP_GRACE_SECONDS: '1' });
  const job = await g.submit(sh('sleep 300', { timeoutSeconds: 2 }));
  const done = await g.waitFor(job.id, undefined, 30_000);
  assert.equal(done.state, 'timed_out');
  assert.match(done.reason!, /timeout of 2 s/);
  const ran = Date.parse(done.finishedAt!) - Date.parse(done.startedAt!);
  assert.ok(ran >= 2000 && ran < 10_000, `ran ${ran} ms`);
});

test('a job over its memory limit fails with OOMKilled', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit(sh('tail /dev/zero', { resources: { memoryMiB: 16 } }));
  const done = await g.waitFor(job.id, undefined, 60_000);
  assert.equal(done.state, 'failed');
  assert.match(done.reason!, /^OOMKilled/);
  assert.equal(done.exitCode, 137);
});

test('a missing image fails clearly, never hangs', async (t) => {
  const g = await startGantry(t);
  const never = await g.submit({ image: 'local/does-not-exist:1', command: ['true'], pullPolicy: 'never' });
  const n = await g.waitFor(never.id, undefined, 30_000);
  assert.equal(n.state, 'failed');
  assert.match(n.reason!, /not present on this host.*"never"/);
  const missing = await g.submit({ image: 'local/does-not-exist:1', command: ['true'] });
  const m = await g.waitFor(missing.id, undefined, 60_000);
  assert.equal(m.state, 'failed');
  assert.match(m.reason!, /pulling "local\/does-not-exist:1" failed/);
});

test('list: newest first, filters by state and label, cursor pagination', async (t) => {
  const g = await startGantry(t);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await g.submit(sh(`exit ${i % 2}`, { labels: { batch: i < 3 ? 'a' : 'b' } }))).id);
  for (const id of ids) await g.waitFor(id);
  const page1 = await g.call<{ items: { id: string }[]; nextCursor: string | null }>('GET', '/v1/jobs?limit=2');
  assert.deepEqual(
    page1.body.items.map((j) => j.id),
    [ids[4], ids[3]],
  );
  const page2 = await g.call<{ items: { id: string }[]; nextCursor: string | null }>(
    'GET',
    `/v1/jobs?limit=2&cursor=${page1.body.nextCursor}`,
  );
  assert.deepEqual(
    page2.body.items.map((j) => j.id),
    [ids[2], ids[1]],
  );
  const page3 = await g.call<{ items: { id: string }[]; nextCursor: string | null }>(
    'GET',
    `/v1/jobs?limit=2&cursor=${page2.body.nextCursor}`,
  );
  assert.deepEqual(
    page3.body.items.map((j) => j.id),
    [ids[0]],
  );
  assert.equal(page3.body.nextCursor, null);
  const failed = await g.call<{ items: { id: string }[] }>('GET', '/v1/jobs?state=failed');
  assert.deepEqual(
    failed.body.items.map((j) => j.id),
    [ids[3], ids[1]],
  );
  const labelled = await g.call<{ items: { id: string }[] }>('GET', '/v1/jobs?label=batch%3Db&state=succeeded,failed');
  assert.deepEqual(
    labelled.body.items.map((j) => j.id),
    [ids[4], ids[3]],
  );
  const bad = await g.call<{ errors: { field: string }[] }>('GET', '/v1/jobs?state=exploded');
  assert.equal(bad.status, 422);
  assert.equal(bad.body.errors[0]!.field, 'querystring.state');
});

test('an allowlisted bind mount is readable inside and read-only by default', async (t) => {
  const dir = tempDir('gantry-mount-');
  fs.writeFileSync(path.join(dir, 'input.txt'), 'from the host\n');
  fs.chmodSync(dir, 0o777);
  const g = await startGantry(t, { GANTRY_MOUNT_ALLOWLIST: dir });
  const job = await g.submit(
    sh('cat /in/input.txt; touch /in/new 2>/dev/null && echo writable || echo read-only', { mounts: [{ source: dir, target: '/in' }] }),
  );
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded');
  const logs = await g.call('GET', `/v1/jobs/${job.id}/logs`);
  assert.equal(logs.text, 'from the host\nread-only\n');
});

test("a bodiless POST sent as application/json (as Airflow's HttpOperator does) is accepted for cancel", async (t) => {
  const g = await startGantry(t);
  const job = await g.submit(sh('sleep 30'));
  const r = await g.call<{ state: string }>('POST', `/v1/jobs/${job.id}/cancel`, { headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 202);
  const octet = await g.call('POST', `/v1/jobs/${job.id}/cancel`, { headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(octet.status, 202, 'aiohttp labels an empty POST application/octet-stream');
  const xml = await g.call('POST', '/v1/jobs', { body: '<job/>', headers: { 'content-type': 'application/xml' } });
  assert.equal(xml.status, 415);
  const empty = await g.call('POST', '/v1/jobs', { headers: { 'content-type': 'application/json' } });
  assert.equal(empty.status, 422, 'a submit still needs a body');
  const poisoned = await g.call('POST', '/v1/jobs', { body: '{"__proto__":{"x":1},"image":"local/busybox","command":["true"]}' });
  assert.equal(poisoned.status, 400, 'prototype poisoning is still refused');
  await g.waitFor(job.id);
});

test("an image reference Docker refuses fails the job with Docker's reason, not as an internal error", async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({ image: `local/busybox@sha256:${'AB'.repeat(32)}`, command: ['true'] });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'failed');
  assert.match(done.reason!, /^Docker refused the image reference ".*": .*invalid/);
});

test('a job runs with the settings it was submitted with, whatever the defaults of the Gantry that runs it after a restart', async (t) => {
  const NODE = 'settings-node';
  const dataDir = tempDir();
  const first = await startGantry(
    null,
    { GANTRY_NODE_NAME: NODE, GANTRY_DEFAULT_TIMEOUT_SECONDS: '2', GANTRY_STOP_GRACE_SECONDS: '1' },
    {},
    dataDir,
  );
  // Drained, the node takes nothing: both jobs are still queued when it stops.
  assert.equal((await first.call('POST', `/v1/nodes/${NODE}/drain`)).status, 200);
  const kept = await first.submit(sh('sleep 300'));
  const older = await first.submit(sh('sleep 300'));
  await first.app.close();
  // As a Gantry before run settings left a job: none stored.
  const file = new Database(path.join(dataDir, 'gantry.db'));
  file.prepare(`UPDATE jobs SET settings = NULL WHERE id = ?`).run(older.id);
  file.close();

  const second = await startGantry(
    t,
    { GANTRY_NODE_NAME: NODE, GANTRY_DEFAULT_TIMEOUT_SECONDS: '3', GANTRY_STOP_GRACE_SECONDS: '1' },
    {},
    dataDir,
  );
  assert.equal((await second.call('POST', `/v1/nodes/${NODE}/undrain`)).status, 200);
  const [k, o] = await Promise.all([second.waitFor(kept.id, undefined, 60_000), second.waitFor(older.id, undefined, 60_000)]);
  assert.equal(k.state, 'timed_out');
  assert.match(k.reason!, /timeout of 2 s/, 'the default of the Gantry it was submitted to');
  assert.equal(o.state, 'timed_out');
  assert.match(o.reason!, /timeout of 3 s/, 'a job stored without settings gets them from the configuration at start-up');
  assert.equal('settings' in k, false, 'the API does not show the settings');
});
