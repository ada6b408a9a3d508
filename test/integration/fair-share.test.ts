/**
 * Fair share against the real engine: an owner who used GPUs recently
 * waits behind one who did not, within a priority, and the use is read
 * back from the jobs' records after a restart (the in-memory account is
 * rebuilt, not lost).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { client, startGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';

const GPU = 'GPU-9a1e0000-0000-4000-8000-00000000fa15:81920';
const TOKENS = { ann: 'ann-token-0123456789abcdef', bob: 'bob-token-0123456789abcdef' };

test('within a priority the owner with less recent GPU use goes first, and that use survives a restart', async (t) => {
  const gate = tempDir('gantry-gate-');
  t.after(() => fs.writeFileSync(path.join(gate, 'open'), ''));
  const dataDir = tempDir();
  const env = {
    GANTRY_GPUS: GPU,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS: '3600',
    GANTRY_TOKENS_FILE: tokensFile(
      (['ann', 'bob'] as const).map((owner) => ({ owner, scopes: ['submit', 'read', 'cancel'], token: TOKENS[owner] })),
    ),
  };
  const first = await startGantry(null, env, {}, dataDir);
  const ann = client(first.url, TOKENS.ann);
  const used = await ann.submit({ image: TEST_IMAGE, command: ['sleep', '2'], gpus: { count: 1 } });
  assert.equal((await ann.waitFor(used.id)).state, 'succeeded');

  // The only GPU is held, so what follows queues: ann's job first, then bob's.
  const hold = await first.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'while [ ! -e /gate/open ]; do sleep 0.05; done'],
    gpus: { count: 1 },
    mounts: [{ source: gate, target: '/gate' }],
  });
  await first.waitFor(hold.id, (j) => j.state === 'running');
  const annQueued = await ann.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } });
  const bobQueued = await client(first.url, TOKENS.bob).submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } });
  assert.equal(bobQueued.position, 0, 'bob used nothing: his job goes ahead of the one ann submitted before it');
  assert.equal((await ann.job(annQueued.id)).position, 1);
  await first.app.close();

  // Restarted: the holding job is adopted, and ann's use is read back from her job's record.
  const second = await startGantry(t, env, {}, dataDir);
  const [ann2, bob2] = [client(second.url, TOKENS.ann), client(second.url, TOKENS.bob)];
  assert.equal((await bob2.job(bobQueued.id)).position, 0);
  assert.equal((await ann2.job(annQueued.id)).position, 1);
  fs.writeFileSync(path.join(gate, 'open'), '');
  const [a, b] = [await ann2.waitFor(annQueued.id), await bob2.waitFor(bobQueued.id)];
  assert.equal(a.state, 'succeeded');
  assert.equal(b.state, 'succeeded');
  assert.ok(Date.parse(b.startedAt!) < Date.parse(a.startedAt!), 'bob ran first');
  assert.equal((await second.waitFor(hold.id)).state, 'succeeded');
});
