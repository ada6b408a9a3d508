/**
 * GET /v1/usage and the dcgm-exporter job mapping with the real engine: GPU
 * jobs under the env driver on a static inventory, a real SQLite store, real
 * HTTP. Usage is checked against the jobs' own attempt records, as a client
 * would compute it; the mapping files against the holders while jobs run.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../../src/model/job.js';
import {
  ADMIN_TOKEN,
  type Client,
  client,
  containersOf,
  spawnGantry,
  startGantry,
  TEST_IMAGE,
  tempDir,
  tokensFile,
} from '../helpers/gantry.js';

const TWO_GPUS = 'GPU-11111111-aaaa-4000-8000-000000000001:81920,GPU-22222222-bbbb-4000-8000-000000000002:81920';
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';
const AWAIT = 'while [ ! -e /gate/open ]; do sleep 0.05; done';

interface OwnerUsage {
  owner: string;
  gpuSeconds: number;
  gpuHours: number;
  weightedGpuHours: number;
  jobs: number;
  attempts: number;
  byModel: { model: string; weight: number; gpuSeconds: number; gpuHours: number; weightedGpuHours: number }[];
}
interface Report {
  from: string;
  to: string;
  items: OwnerUsage[];
}
interface Problem {
  type: string;
  status: number;
  errors?: { field: string; message: string }[];
}

/** A gate folder mounted at /gate: jobs that await it run until the test opens it. */
function gate(): { dir: string; mounts: { source: string; target: string }[]; open(): void } {
  const dir = tempDir('gantry-gate-');
  fs.chmodSync(dir, 0o755);
  return { dir, mounts: [{ source: dir, target: '/gate' }], open: () => fs.writeFileSync(`${dir}/open`, '') };
}

/** The mapping directory's files and their lines, each file's lines sorted (holders of a shared card take it in any order). */
function mapping(dir: string): Record<string, string[]> {
  if (!fs.existsSync(dir)) return {};
  return Object.fromEntries(
    fs.readdirSync(dir).map((f) => {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      assert.ok(text.endsWith('\n'), `${f} ends with a newline`);
      return [f, text.trimEnd().split('\n').sort()];
    }),
  );
}

/** GPU-seconds of a job as its attempts say: Σ (finishedAt − startedAt) × GPUs, clipped to [from, to). */
function expectedSeconds(job: Job, from: number, to: number): number {
  return job.attempts.reduce((sum, a) => {
    if (a.startedAt === null) return sum;
    const ms = Math.max(0, Math.min(Date.parse(a.finishedAt), to) - Math.max(Date.parse(a.startedAt), from));
    return sum + (ms / 1000) * a.gpus.length;
  }, 0);
}

async function start(t: TestContext, mapDir: string, allowlist: string) {
  const g = await startGantry(t, {
    GANTRY_GPUS: TWO_GPUS,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: allowlist,
    GANTRY_DCGM_JOB_MAPPING_DIR: mapDir,
    GANTRY_GPU_MODEL_WEIGHTS: 'A100=1.5,STATIC=3',
    GANTRY_TOKENS_FILE: tokensFile([
      { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
      { owner: 'alice', scopes: ['submit', 'read', 'cancel'], token: ALICE },
      { owner: 'bob', scopes: ['submit', 'read'], token: BOB },
    ]),
  });
  return { g, alice: client(g.url, ALICE), bob: client(g.url, BOB) };
}

const usage = (c: Client, query = '') => c.call<Report>('GET', `/v1/usage${query}`);

test('usage per owner from the jobs’ attempts (retries, a shared card, running jobs), weighted by model, as JSON and CSV; mapping files follow the holders', async (t) => {
  const mapDir = path.join(tempDir('gantry-dcgm-'), 'maps');
  const g8 = gate();
  const { g, alice, bob } = await start(t, mapDir, g8.dir);
  const from = new Date(Date.now() - 1000).toISOString();

  // alice: a whole card, and half of the other one; bob: the other half, and a job retried once.
  const exclusive = await alice.submit({ image: TEST_IMAGE, command: ['sh', '-c', AWAIT], gpus: { ids: ['1'] }, mounts: g8.mounts });
  const sharedA = await alice.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', AWAIT],
    gpus: { count: 1, memoryMiB: 20000 },
    mounts: g8.mounts,
  });
  const sharedB = await bob.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', AWAIT],
    gpus: { count: 1, memoryMiB: 20000 },
    mounts: g8.mounts,
  });
  for (const j of [exclusive, sharedA, sharedB]) await g.waitFor(j.id, (x) => x.state === 'running');

  assert.deepEqual(mapping(mapDir), { '0': [sharedA.id, sharedB.id].sort(), '1': [exclusive.id] });

  // Running jobs count up to now.
  await sleep(300);
  const live = await usage(g);
  assert.equal(live.status, 200);
  assert.deepEqual(
    live.body.items.map((i) => [i.owner, i.jobs, i.attempts]),
    [
      ['alice', 2, 2],
      ['bob', 1, 1],
    ],
  );
  const aliceLive = live.body.items[0]!.gpuSeconds;
  assert.ok(aliceLive >= 0.6, `two cards for at least 0.3 s each: ${aliceLive}`);
  await sleep(200);
  assert.ok((await usage(g)).body.items[0]!.gpuSeconds > aliceLive, 'a running job’s usage grows');

  g8.open();
  const ended = await Promise.all([exclusive, sharedA, sharedB].map((j) => g.waitFor(j.id)));
  assert.deepEqual(
    ended.map((j) => j.state),
    ['succeeded', 'succeeded', 'succeeded'],
  );
  for (let i = 0; Object.keys(mapping(mapDir)).length > 0; i++) {
    assert.ok(i < 100, `the mapping is cleared once the jobs end: ${JSON.stringify(mapping(mapDir))}`);
    await sleep(50);
  }

  // bob's retried job: two attempts on one card, both counted.
  const retried = await bob.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'sleep 0.2; exit 3'],
    gpus: { count: 1 },
    retry: { maxAttempts: 2, on: ['exit_code'] },
  });
  const retriedJob = await g.waitFor(retried.id);
  assert.deepEqual([retriedJob.state, retriedJob.attempts.length], ['failed', 2]);
  const cpuOnly = await bob.submit({ image: TEST_IMAGE, command: ['true'] });
  await g.waitFor(cpuOnly.id);

  const to = new Date(Date.now() + 1000).toISOString();
  const jobs = await Promise.all([exclusive, sharedA, sharedB, retried].map((j) => g.job(j.id)));
  const [fromMs, toMs] = [Date.parse(from), Date.parse(to)];
  const aliceSeconds = expectedSeconds(jobs[0]!, fromMs, toMs) + expectedSeconds(jobs[1]!, fromMs, toMs);
  const bobSeconds = expectedSeconds(jobs[2]!, fromMs, toMs) + expectedSeconds(jobs[3]!, fromMs, toMs);
  const q = `?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  const report = await usage(g, q);
  assert.equal(report.status, 200, report.text);
  assert.deepEqual([report.body.from, report.body.to], [from, to]);
  const byOwner = Object.fromEntries(report.body.items.map((i) => [i.owner, i]));
  assert.deepEqual(Object.keys(byOwner).sort(), ['alice', 'bob']);
  for (const [owner, seconds, jobCount, attempts] of [
    ['alice', aliceSeconds, 2, 2],
    ['bob', bobSeconds, 2, 3],
  ] as const) {
    const u = byOwner[owner]!;
    assert.ok(Math.abs(u.gpuSeconds - seconds) < 0.002, `${owner}: ${u.gpuSeconds} ≈ ${seconds}`);
    assert.ok(Math.abs(u.gpuHours - seconds / 3600) < 1e-6);
    // The static inventory's cards are named "static": STATIC=3 matches them, case-insensitively.
    assert.ok(Math.abs(u.weightedGpuHours - (3 * seconds) / 3600) < 1e-5);
    assert.deepEqual([u.jobs, u.attempts], [jobCount, attempts]);
    assert.deepEqual(
      u.byModel.map((m) => [m.model, m.weight, m.gpuSeconds]),
      [['static', 3, u.gpuSeconds]],
    );
  }

  // A window that ends before the jobs started holds nothing.
  const before = await usage(g, `?to=${encodeURIComponent(from)}`);
  assert.deepEqual(before.body.items, []);

  // CSV, by Accept or by format=csv: a header row, one row per owner.
  const asked: { query: string; headers: Record<string, string> }[] = [
    { query: q, headers: { accept: 'text/csv' } },
    { query: `${q}&format=csv`, headers: {} },
  ];
  for (const opts of asked) {
    const csv = await g.call<string>('GET', `/v1/usage${opts.query}`, { headers: opts.headers });
    assert.equal(csv.status, 200);
    assert.equal(csv.headers['content-type'], 'text/csv; charset=utf-8');
    const lines = csv.text.split('\r\n');
    assert.equal(lines[0], 'owner,from,to,gpu_seconds,gpu_hours,weighted_gpu_hours,jobs,attempts');
    const rows = report.body.items.map((i) =>
      [i.owner, from, to, i.gpuSeconds, i.gpuHours, i.weightedGpuHours, i.jobs, i.attempts].join(','),
    );
    assert.deepEqual(lines.slice(1), [...rows, '']);
  }
  const json = await g.call('GET', `/v1/usage${q}&format=json`, { headers: { accept: 'text/csv' } });
  assert.match(String(json.headers['content-type']), /^application\/json/, 'format=json wins over Accept');

  // A non-admin sees its own usage only; naming another owner is refused.
  assert.deepEqual(
    (await usage(alice, q)).body.items.map((i) => i.owner),
    ['alice'],
  );
  assert.deepEqual(
    (await usage(bob, `${q}&owner=bob`)).body.items.map((i) => i.owner),
    ['bob'],
  );
  const other = await alice.call<Problem>('GET', `/v1/usage${q}&owner=bob`);
  assert.equal(other.status, 403);
  assert.equal(other.headers['content-type'], 'application/problem+json; charset=utf-8');
  assert.deepEqual(
    other.body.errors?.map((e) => e.field),
    ['querystring.owner'],
  );
  assert.deepEqual(
    (await usage(g, `${q}&owner=bob`)).body.items.map((i) => i.owner),
    ['bob'],
    'an admin may name any owner',
  );
  assert.equal((await g.call('GET', '/v1/usage', { token: null })).status, 401);
});

test('a bad window is a 422 naming the field', async (t) => {
  const { g } = await start(t, path.join(tempDir('gantry-dcgm-'), 'maps'), tempDir());
  const day = 86_400_000;
  const iso = (ms: number) => new Date(ms).toISOString();
  const now = Date.now();
  for (const [query, field] of [
    ['from=yesterday', 'querystring.from'],
    ['to=2026-01-05T09:30:00', 'querystring.to'],
    ['from=2026-01-05T10:00:00Z&to=2026-01-05T09:00:00Z', 'querystring.to'],
    ['from=2026-01-05T10:00:00Z&to=2026-01-05T10:00:00Z', 'querystring.to'],
    [`from=${iso(now - 400 * day)}&to=${iso(now)}`, 'querystring.from'],
    [`from=${iso(now - 400 * day)}`, 'querystring.from'],
    [`from=${iso(now + day)}`, 'querystring.from'],
    ['format=xml', 'querystring.format'],
    ['owner=', 'querystring.owner'],
  ] as const) {
    const r = await g.call<Problem>('GET', `/v1/usage?${query.replaceAll('+', '%2B')}`);
    assert.equal(r.status, 422, `${query}: ${r.text}`);
    assert.equal(r.body.type, 'https://gantry.dev/problems/validation');
    assert.deepEqual(
      r.body.errors?.map((e) => e.field),
      [field],
      query,
    );
  }
  const year = await g.call<Report>('GET', `/v1/usage?from=${iso(now - 366 * day)}&to=${iso(now)}`);
  assert.equal(year.status, 200, 'a window of exactly the longest span is fine');
});

test('after kill -9 and a restart, the mapping is rebuilt from the re-adopted jobs, and their usage spans the restart', async (t) => {
  const dir = tempDir();
  const mapDir = path.join(tempDir('gantry-dcgm-'), 'maps');
  const g8 = gate();
  const env = {
    GANTRY_GPUS: TWO_GPUS,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: g8.dir,
    GANTRY_DCGM_JOB_MAPPING_DIR: mapDir,
  };
  let g = await spawnGantry(dir, env);
  t.after(() => g.stop('SIGKILL'));
  const job = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', AWAIT], gpus: { ids: ['1'] }, mounts: g8.mounts });
  const running = await g.waitFor(job.id, (j) => j.state === 'running');
  assert.deepEqual(mapping(mapDir), { '1': [job.id] });
  await g.stop('SIGKILL');
  assert.equal((await containersOf(job.id))[0]?.State, 'running', 'the container outlived Gantry');

  // While Gantry is down: its file is lost, and another card's file is stale (a job that ended meanwhile).
  fs.rmSync(path.join(mapDir, '1'));
  fs.writeFileSync(path.join(mapDir, '0'), 'job-that-ended\n');
  fs.writeFileSync(path.join(mapDir, '7'), 'another-host-tool\n');

  g = await spawnGantry(dir, env);
  assert.deepEqual(mapping(mapDir), { '1': [job.id], '7': ['another-host-tool'] });

  g8.open();
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded');
  for (let i = 0; mapping(mapDir)['1'] !== undefined; i++) {
    assert.ok(i < 100, 'the file is removed once the job ends');
    await sleep(50);
  }
  assert.deepEqual(mapping(mapDir), { '7': ['another-host-tool'] });

  const report = await g.call<Report>('GET', '/v1/usage');
  const seconds = (Date.parse(done.finishedAt!) - Date.parse(running.startedAt!)) / 1000;
  assert.ok(Math.abs(report.body.items[0]!.gpuSeconds - seconds) < 0.002, `${report.body.items[0]!.gpuSeconds} ≈ ${seconds}`);
});
