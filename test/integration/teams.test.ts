// GET /v1/teams and the team gauges of /metrics, on a real Gantry process and
// the real engine: each team's use against its quota (GANTRY_QUOTAS_FILE),
// what each token may see of it, and a reload on SIGHUP that removes a team.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditRecord } from '../../src/model/audit.js';
import type { TeamList } from '../../src/model/teams.js';
import { type Client, client, spawnGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';

const TOKENS = { alice: 'alice-token-0123456789abcdef', carol: 'carol-token-0123456789abcdef', dave: 'dave-token-0123456789abcdefgh' };
const GPUS = 'GPU-9a1e0000-0000-4000-8000-00000000c0de:81920,GPU-9a1e0000-0000-4000-8000-00000000c0df:81920';

/** The value of each series of a metric, keyed by its label set as written (`team="ml",kind="held"`). */
async function series(c: Client, name: string): Promise<Map<string, number>> {
  const r = await c.call('GET', '/metrics');
  assert.equal(r.status, 200, r.text);
  const out = new Map<string, number>();
  for (const m of r.text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) out.set(m[1]!, Number(m[2]));
  return out;
}

async function teams(c: Client): Promise<TeamList> {
  const r = await c.call<TeamList>('GET', '/v1/teams');
  assert.equal(r.status, 200, r.text);
  return r.body;
}

test('GET /v1/teams and /metrics: each team’s use against its quota, what each token sees, and a team removed by a reload', async (t) => {
  const dir = tempDir();
  const quotas = path.join(dir, 'quotas.json');
  fs.writeFileSync(
    quotas,
    JSON.stringify([
      { name: 'ml', owners: ['alice', 'bob'], gpus: 1, borrowGpus: 1, maxRunning: 3, maxQueued: 5 },
      { name: 'web', owners: ['carol'], gpus: 1, maxQueued: 2 },
    ]),
  );
  const gate = tempDir('gantry-gate-');
  const g = await spawnGantry(tempDir(), {
    GANTRY_QUOTAS_FILE: quotas,
    GANTRY_GPUS: GPUS,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS: '3600',
    GANTRY_TOKENS_FILE: tokensFile(
      (['alice', 'carol', 'dave'] as const).map((owner) => ({ owner, scopes: ['submit', 'read', 'cancel'], token: TOKENS[owner] })),
    ),
  });
  t.after(() => g.stop());
  t.after(() => fs.writeFileSync(path.join(gate, 'open'), ''));
  const [alice, carol, dave] = [client(g.url, TOKENS.alice), client(g.url, TOKENS.carol), client(g.url, TOKENS.dave)];
  const held = {
    image: TEST_IMAGE,
    command: ['sh', '-c', 'while [ ! -e /gate/open ]; do sleep 0.05; done'],
    mounts: [{ source: gate, target: '/gate' }],
  };

  // ml holds its one GPU and borrows the other (nobody waits); its third GPU job and web's wait.
  const m1 = await alice.submit({ ...held, gpus: { count: 1 } });
  const m2 = await alice.submit({ ...held, gpus: { count: 1 } });
  await alice.waitFor(m1.id, (j) => j.state === 'running');
  await alice.waitFor(m2.id, (j) => j.state === 'running');
  const m3 = await alice.submit({ ...held, gpus: { count: 1 } });
  await alice.waitFor(m3.id, (j) => j.waiting?.code === 'quota');
  const w1 = await carol.submit({ ...held, gpus: { count: 1 } });
  await carol.waitFor(w1.id, (j) => j.waiting !== null);

  const all = await teams(g);
  assert.deepEqual(
    all.items.map((x) => ({ name: x.name, owners: x.owners, limits: x.limits, use: x.use })),
    [
      {
        name: 'ml',
        owners: ['alice', 'bob'],
        limits: { maxQueued: 5, maxRunning: 3, gpus: 1, borrowGpus: 1, share: 1 },
        use: { queuedJobs: 1, runningJobs: 2, gpus: 2, borrowedGpus: 1 },
      },
      {
        name: 'web',
        owners: ['carol'],
        limits: { maxQueued: 2, maxRunning: null, gpus: 1, borrowGpus: null, share: 1 },
        use: { queuedJobs: 1, runningJobs: 0, gpus: 0, borrowedGpus: 0 },
      },
    ],
  );
  const ml = all.items[0]!;
  assert.ok(ml.fairShare.gpuSeconds > 0, 'two GPUs held for a while are recent use');
  assert.equal(ml.fairShare.rank, ml.fairShare.gpuSeconds / ml.limits.share);
  assert.deepEqual(all.items[1]!.fairShare, { gpuSeconds: 0, rank: 0 });
  assert.equal(all.fairShare.halfLifeSeconds, 3600);
  assert.deepEqual(
    all.fairShare.units.map((u) => [u.unit, u.share]),
    [['team:ml', 1]],
  );

  // A member sees its own team and unit; an owner in no team sees none.
  const mine = await teams(alice);
  assert.deepEqual(
    mine.items.map((x) => x.name),
    ['ml'],
  );
  assert.deepEqual(
    mine.fairShare.units.map((u) => u.unit),
    ['team:ml'],
  );
  assert.deepEqual(
    (await teams(carol)).items.map((x) => x.name),
    ['web'],
  );
  const outsider = await teams(dave);
  assert.deepEqual(outsider.items, []);
  assert.deepEqual(outsider.fairShare.units, []);
  assert.equal((await g.call('GET', '/v1/teams', { token: null })).status, 401);

  const gpus = await series(g, 'gantry_team_gpus');
  assert.deepEqual(Object.fromEntries(gpus), {
    'team="ml",kind="held"': 2,
    'team="ml",kind="nominal"': 1,
    'team="ml",kind="borrow_limit"': 2,
    'team="web",kind="held"': 0,
    'team="web",kind="nominal"': 1,
    'team="web",kind="borrow_limit"': 1,
  });
  assert.deepEqual(Object.fromEntries(await series(g, 'gantry_team_jobs')), {
    'team="ml",state="queued"': 1,
    'team="ml",state="running"': 2,
    'team="web",state="queued"': 1,
    'team="web",state="running"': 0,
  });
  assert.deepEqual(Object.fromEntries(await series(g, 'gantry_team_limit_jobs')), {
    'team="ml",kind="max_queued"': 5,
    'team="ml",kind="max_running"': 3,
    'team="web",kind="max_queued"': 2,
  });
  assert.ok((await series(g, 'gantry_fair_share_usage_gpu_seconds')).get('unit="team:ml"')! > 0);

  // Team ml is removed: it leaves both at once, and alice's use counts as her own.
  fs.writeFileSync(quotas, JSON.stringify([{ name: 'web', owners: ['carol'], gpus: 1, maxQueued: 2 }]));
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
  const after = await teams(g);
  assert.deepEqual(
    after.items.map((x) => x.name),
    ['web'],
  );
  assert.ok(after.fairShare.units.some((u) => u.unit === 'owner:alice' && u.share === 1 && u.gpuSeconds > 0));
  assert.deepEqual((await teams(alice)).items, []);
  for (const name of ['gantry_team_gpus', 'gantry_team_jobs', 'gantry_team_limit_jobs']) {
    const keys = [...(await series(g, name)).keys()];
    assert.ok(keys.length > 0 && keys.every((k) => k.startsWith('team="web"')), `${name}: ${keys.join(' ')}`);
  }
  const units = await series(g, 'gantry_fair_share_usage_gpu_seconds');
  assert.ok(!units.has('unit="team:ml"'));
  assert.ok(units.get('unit="owner:alice"')! > 0);
});
