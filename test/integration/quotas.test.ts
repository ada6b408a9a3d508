import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config.js';
import type { AuditRecord } from '../../src/model/audit.js';
import type { Job } from '../../src/model/job.js';
import { readQuotasFile } from '../../src/scheduling/quotas.js';
import { client, spawnGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';

const TOKENS = { alice: 'alice-token-0123456789abcdef', bob: 'bob-token-0123456789abcdefgh', carol: 'carol-token-0123456789abcdef' };
const GPU = 'GPU-9a1e0000-0000-4000-8000-00000000c0de:81920';

test('a team at its maxQueued is refused with 429 and Retry-After; others are not; a reload on SIGHUP applies new limits', async (t) => {
  const dir = tempDir();
  const quotas = path.join(dir, 'quotas.json');
  fs.writeFileSync(quotas, JSON.stringify([{ name: 'ml', owners: ['alice', 'bob'], maxQueued: 3 }]));
  const gate = tempDir('gantry-gate-');
  const g = await spawnGantry(tempDir(), {
    GANTRY_QUOTAS_FILE: quotas,
    GANTRY_GPUS: GPU,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_TOKENS_FILE: tokensFile(
      (['alice', 'bob', 'carol'] as const).map((owner) => ({ owner, scopes: ['submit', 'read', 'cancel'], token: TOKENS[owner] })),
    ),
  });
  t.after(() => g.stop());
  const [alice, bob, carol] = [client(g.url, TOKENS.alice), client(g.url, TOKENS.bob), client(g.url, TOKENS.carol)];
  // The only GPU is held, so one-GPU jobs stay queued.
  const hold = await carol.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'while [ ! -e /gate/open ]; do sleep 0.05; done'],
    gpus: { count: 1 },
    mounts: [{ source: gate, target: '/gate' }],
  });
  await carol.waitFor(hold.id, (j) => j.state === 'running');
  const queued = (who: typeof alice) =>
    who.call<Job>('POST', '/v1/jobs', { body: { image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } } });

  const first = [await queued(alice), await queued(bob), await queued(alice)];
  assert.deepEqual(
    first.map((r) => r.status),
    [201, 201, 201],
  );
  const refused = await queued(bob);
  assert.equal(refused.status, 429, refused.text);
  assert.equal(refused.headers['retry-after'], '30');
  assert.match(String(refused.headers['content-type']), /application\/problem\+json/);
  const problem = refused.body as unknown as { type: string; detail: string };
  assert.match(problem.type, /quota-exceeded$/);
  assert.match(problem.detail, /team "ml" has 3 jobs queued, its maxQueued in GANTRY_QUOTAS_FILE/);
  assert.equal(
    (await alice.call('POST', '/v1/jobs?dryRun=true', { body: { image: TEST_IMAGE, command: ['true'] } })).status,
    429,
    'a dry run says the same',
  );
  assert.equal((await queued(carol)).status, 201, 'an owner in no team has no limit');

  // A job leaving the queue makes room.
  assert.equal((await alice.call<Job>('POST', `/v1/jobs/${first[0]!.body.id}/cancel`)).body.state, 'cancelled');
  assert.equal((await queued(bob)).status, 201);
  assert.equal((await queued(alice)).status, 429);

  // A higher limit, read on SIGHUP; the reload is in the audit trail.
  fs.writeFileSync(quotas, JSON.stringify([{ name: 'ml', owners: ['alice', 'bob'], maxQueued: 5 }]));
  g.proc.kill('SIGHUP');
  let reloads: AuditRecord[] = [];
  for (let i = 0; i < 100 && !reloads.some((r) => r.target === 'quotas'); i++) {
    await sleep(100);
    reloads = (await g.call<{ items: AuditRecord[] }>('GET', '/v1/audit?action=config.reload')).body.items;
  }
  assert.deepEqual(
    reloads.filter((r) => r.target === 'quotas').map((r) => r.outcome),
    ['ok'],
  );
  assert.equal((await queued(alice)).status, 201);
});

test('a quotas file is checked at start: an owner in two teams, a bad limit, a file that is not JSON', () => {
  const file = (content: string) => {
    const f = path.join(tempDir(), 'quotas.json');
    fs.writeFileSync(f, content);
    return f;
  };
  assert.throws(
    () =>
      readQuotasFile(
        file(
          JSON.stringify([
            { name: 'a', owners: ['x'] },
            { name: 'b', owners: ['y', 'x'] },
          ]),
        ),
      ),
    /GANTRY_QUOTAS_FILE: .*\[1\.owners\.1\] "x" is already in team "a"/,
  );
  assert.throws(() => readQuotasFile(file(JSON.stringify([{ name: 'a', owners: ['x'], maxQueued: 0 }]))), /\[0\.maxQueued\]/);
  assert.throws(() => readQuotasFile(file(JSON.stringify([{ name: 'a', owners: ['x'], maxGpus: 2 }]))), /unrecognized key|maxGpus/i);
  assert.throws(() => readQuotasFile(file('[{')), /GANTRY_QUOTAS_FILE: /);
  assert.equal(loadConfig({ GANTRY_QUOTAS_FILE: '/etc/gantry/quotas.json' }).quotasFile, '/etc/gantry/quotas.json');
});

test('team limits on the real engine: a share, borrowing while nobody is owed, maxRunning; waits say quota', async (t) => {
  const dir = tempDir();
  const quotas = path.join(dir, 'quotas.json');
  fs.writeFileSync(
    quotas,
    JSON.stringify([
      { name: 'ml', owners: ['alice'], gpus: 1, borrowGpus: 1, maxRunning: 3 },
      { name: 'web', owners: ['carol'], gpus: 1 },
    ]),
  );
  const gate = tempDir('gantry-gate-');
  const g = await spawnGantry(tempDir(), {
    GANTRY_QUOTAS_FILE: quotas,
    GANTRY_GPUS: `${GPU},GPU-9a1e0000-0000-4000-8000-00000000c0df:81920`,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_TOKENS_FILE: tokensFile(
      (['alice', 'bob', 'carol'] as const).map((owner) => ({ owner, scopes: ['submit', 'read', 'cancel'], token: TOKENS[owner] })),
    ),
  });
  t.after(() => g.stop());
  const [alice, carol] = [client(g.url, TOKENS.alice), client(g.url, TOKENS.carol)];
  const gated = (name: string, extra: Record<string, unknown> = {}) => ({
    image: TEST_IMAGE,
    command: ['sh', '-c', `while [ ! -e /gate/${name} ]; do sleep 0.05; done`],
    mounts: [{ source: gate, target: '/gate' }],
    ...extra,
  });
  const open = (name: string) => fs.writeFileSync(path.join(gate, name), '');
  // Its share, then one more borrowed (nobody else waits): both cards are alice's.
  const m1 = await alice.submit(gated('m1', { gpus: { count: 1 } }));
  const m2 = await alice.submit(gated('m2', { gpus: { count: 1 } }));
  await alice.waitFor(m1.id, (j) => j.state === 'running');
  await alice.waitFor(m2.id, (j) => j.state === 'running');
  const m3 = await alice.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } });
  const w3 = await alice.waitFor(m3.id, (j) => j.waiting?.code === 'quota');
  assert.match(w3.reason!, /team "ml" holds 2 of its 1 GPUs \(\+1 it may borrow\)/);
  // A CPU job is the team's third running job; a fourth is over maxRunning.
  const c1 = await alice.submit(gated('c'));
  await alice.waitFor(c1.id, (j) => j.state === 'running');
  const c2 = await alice.submit(gated('c'));
  const w4 = await alice.waitFor(c2.id, (j) => j.waiting?.code === 'quota');
  assert.match(w4.reason!, /team "ml" runs 3 jobs, its maxRunning/);
  // Team web's job waits for a card (no preemption yet), and is owed its share from now on.
  const web = await carol.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } });
  assert.equal((await carol.waitFor(web.id, (j) => j.waiting !== null)).waiting?.code, 'gpus');

  // A card frees: web is owed its share, so it gets the card, not ml's borrowing job.
  open('m1');
  const webDone = await carol.waitFor(web.id);
  assert.equal(webDone.state, 'succeeded');
  open('m2');
  open('c');
  for (const id of [m1.id, m2.id, m3.id, c1.id, c2.id]) assert.equal((await alice.waitFor(id)).state, 'succeeded');
  const m3Started = Date.parse((await alice.job(m3.id)).startedAt!);
  assert.ok(m3Started >= Date.parse(webDone.startedAt!), 'the borrower waited while web was owed');
});
