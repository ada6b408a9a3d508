// No owner reads another owner's job ids through the API: two owners share a
// live Gantry (embedded store, in-memory container runtime) with two GPUs,
// and each reads what the other's jobs do to its own.

import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import type { Job } from '../../src/model/job.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { ADMIN_TOKEN, client, startGantry, TEST_IMAGE, tokensFile } from '../helpers/gantry.js';

const GPU_A = 'GPU-aaaaaaaa-1111-2222-3333-444444444444';
const GPU_B = 'GPU-bbbbbbbb-1111-2222-3333-444444444444';
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';

interface GpuView {
  uuid: string;
  allocatedMemoryMiB: number;
  holders: { jobId: string; memoryMiB: number | null }[];
}

async function twoOwners(t: TestContext) {
  const file = tokensFile([
    { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
    { owner: 'alice', scopes: ['submit', 'read', 'cancel'], token: ALICE },
    { owner: 'bob', scopes: ['submit', 'read', 'cancel'], token: BOB },
  ]);
  const env = { GANTRY_TOKENS_FILE: file, GANTRY_GPUS: `${GPU_A}:81559,${GPU_B}:81559`, GANTRY_GPU_DRIVER: 'env' };
  const g = await startGantry(t, env, { runtime: new FakeRuntime() });
  return { g, alice: client(g.url, ALICE), bob: client(g.url, BOB) };
}

const job = (extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sleep', '300'], ...extra });

test("GET /v1/gpus names only the caller's own holders; an admin sees every one", async (t) => {
  const { g, alice, bob } = await twoOwners(t);
  const mine = await alice.submit(job({ gpus: { count: 1 } }));
  const theirs = await bob.submit(job({ gpus: { count: 1 } }));
  await g.waitFor(mine.id, (j) => j.state === 'running');
  await g.waitFor(theirs.id, (j) => j.state === 'running');
  const holders = async (c: typeof alice) => {
    const r = await c.call<{ items: GpuView[] }>('GET', '/v1/gpus');
    assert.equal(r.status, 200, r.text);
    return { ids: r.body.items.flatMap((gpu) => gpu.holders.map((h) => h.jobId)).sort(), text: r.text, items: r.body.items };
  };
  assert.deepEqual((await holders(g)).ids, [mine.id, theirs.id].sort(), 'an admin sees every holder');
  const asAlice = await holders(alice);
  assert.deepEqual(asAlice.ids, [mine.id], 'alice sees only her own job');
  assert.ok(!asAlice.text.includes(theirs.id), "bob's job id appears nowhere in alice's answer");
  assert.ok(
    asAlice.items.every((gpu) => gpu.allocatedMemoryMiB === 81559),
    'that both cards are in use is no secret',
  );
});

test("a job behind another owner's GPU reservation waits for a job with a better claim, unnamed; the reservation's owner is told which", async (t) => {
  const { g, alice, bob } = await twoOwners(t);
  // One card held; alice's two-card job cannot start and holds the reservation.
  const hog = await g.submit(job({ gpus: { count: 1 } }));
  await g.waitFor(hog.id, (j) => j.state === 'running');
  const big = await alice.submit(job({ gpus: { count: 2 } }));
  await alice.waitFor(big.id, (j) => j.waiting?.code === 'gpus');
  const bobs = await bob.submit(job({ gpus: { count: 1 }, timeoutSeconds: 86_400 }));
  const alices = await alice.submit(job({ gpus: { count: 1 }, timeoutSeconds: 86_400 }));

  const bobView = await bob.waitFor(bobs.id, (j) => j.waiting?.code !== 'pending');
  assert.equal(bobView.waiting?.code, 'reserved');
  assert.match(bobView.reason ?? '', /^waiting behind a job with a better claim, which holds the GPU reservation/);
  const aliceView = await alice.waitFor(alices.id, (j) => j.waiting?.code !== 'pending');
  assert.equal(aliceView.waiting?.code, `reserved_for:${big.id}`, 'her own job is named');

  const dry = await bob.call<Job>('POST', '/v1/jobs?dryRun=true', { body: job({ gpus: { count: 1 }, timeoutSeconds: 86_400 }) });
  assert.equal(dry.status, 200, dry.text);
  assert.equal(dry.body.waiting?.code, 'reserved');
  for (const text of [JSON.stringify(await bob.job(bobs.id)), dry.text]) {
    assert.ok(!text.includes(big.id) && !text.includes(hog.id), `no other owner's job id: ${text}`);
  }
});
