import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ChildGantry, containersOf, spawnGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

const TWO_GPUS = 'GPU-11111111-aaaa-4000-8000-000000000001:81920,GPU-22222222-bbbb-4000-8000-000000000002:81920';
// The jobs wait for a file the test creates, so they outlive the restart however slow this machine is.
const GATE = tempDir('gantry-gate-');
const ENV = { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'env', GANTRY_MOUNT_ALLOWLIST: GATE };
const AWAIT = 'while [ ! -e /gate/open ]; do sleep 0.05; done';
const gate = [{ source: GATE, target: '/gate' }];

async function holders(g: ChildGantry): Promise<Record<string, { jobId: string; memoryMiB: number | null }[]>> {
  const r = await g.call<{ items: { uuid: string; holders: { jobId: string; memoryMiB: number | null }[] }[] }>('GET', '/v1/gpus');
  return Object.fromEntries(r.body.items.map((d) => [d.uuid, d.holders]));
}

test('after Gantry is killed and restarted, allocations are rebuilt from the running containers', async (t) => {
  const dir = tempDir();
  let g = await spawnGantry(dir, ENV);
  t.after(() => g.stop('SIGKILL'));
  const exclusive = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', `${AWAIT}; echo $NVIDIA_VISIBLE_DEVICES`],
    gpus: { ids: ['1'] },
    mounts: gate,
  });
  const shared = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', `${AWAIT}; echo $GANTRY_GPU_MEMORY_MIB`],
    gpus: { count: 1, memoryMiB: 30000 },
    mounts: gate,
  });
  await g.waitFor(exclusive.id, (j) => j.state === 'running');
  await g.waitFor(shared.id, (j) => j.state === 'running');
  const before = await holders(g);
  await g.stop('SIGKILL');
  assert.equal((await containersOf(exclusive.id))[0]?.State, 'running', 'the container outlived Gantry');

  g = await spawnGantry(dir, ENV);
  assert.deepEqual(await holders(g), before, 'the same jobs hold the same GPUs after the restart');
  const [uuid0, uuid1] = Object.keys(before);
  assert.deepEqual(before[uuid1!], [{ jobId: exclusive.id, memoryMiB: null }]);
  assert.deepEqual(before[uuid0!], [{ jobId: shared.id, memoryMiB: 30000 }]);

  // Nothing is handed out twice: a job wanting both cards waits for the adopted ones to end.
  const both = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo $NVIDIA_VISIBLE_DEVICES'], gpus: { count: 2 } });
  const exclusiveCard = await g.submit({ image: TEST_IMAGE, command: ['true'], gpus: { ids: [uuid1!] } });
  await sleep(300);
  const waiting = await g.job(both.id);
  assert.deepEqual([waiting.state, waiting.waiting?.code], ['queued', 'gpus']);
  assert.equal((await g.job(exclusiveCard.id)).waiting?.code, `reserved_for:${both.id}`);
  assert.equal((await g.job(exclusiveCard.id)).state, 'queued');
  fs.writeFileSync(`${GATE}/open`, '');

  const ex = await g.waitFor(exclusive.id);
  const sh = await g.waitFor(shared.id);
  assert.deepEqual([ex.state, ex.result], ['succeeded', uuid1]);
  assert.deepEqual([sh.state, sh.result], ['succeeded', '30000']);
  const b = await g.waitFor(both.id);
  assert.deepEqual([b.state, b.result], ['succeeded', `${uuid0},${uuid1}`]);
  assert.ok(Date.parse(b.startedAt!) >= Math.max(Date.parse(ex.finishedAt!), Date.parse(sh.finishedAt!)));
  assert.equal((await g.waitFor(exclusiveCard.id)).state, 'succeeded');
  for (let i = 0; Object.values(await holders(g)).flat().length > 0; i++) {
    assert.ok(i < 100, 'all released');
    await sleep(50);
  }
});
