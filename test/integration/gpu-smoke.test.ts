/**
 * A card out of service comes back by an admin's undrain or by a smoke job
 * that passes: the real engine, a static inventory of two cards and the env
 * driver. The smoke job alone gets the card while it is out; a failing one
 * leaves it out and says so; a passing one puts it back in service, and a
 * job that waited for it then runs on it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuditRecord } from '../../src/model/audit.js';
import type { Job } from '../../src/model/job.js';
import { eventually } from '../helpers/fleet.js';
import { client, startGantry, TEST_IMAGE, tokensFile } from '../helpers/gantry.js';

const U0 = 'GPU-5a0e0000-0000-4000-8000-000000000000';
const U1 = 'GPU-5a0e0000-0000-4000-8000-000000000001';
interface Health {
  state: string;
  reason: string | null;
  smokeJob: string | null;
}

test('a smoke job alone gets a card out of service; failing it leaves the card out, passing it brings the card back', async (t) => {
  const g = await startGantry(t, {
    GANTRY_GPUS: `${U0}:81920,${U1}:81920`,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_GPU_HEALTH_INTERVAL_SECONDS: '0',
    GANTRY_TOKENS_FILE: tokensFile([{ owner: 'ops', scopes: ['submit', 'read'], token: 'ops-token-0123456789abcdefgh' }]),
  });
  const healthOf = async (uuid: string) =>
    (await g.call<{ items: { uuid: string; health: Health }[] }>('GET', '/v1/gpus')).body.items.find((c) => c.uuid === uuid)!.health;
  const smoke = (uuid: string, command: string[]) =>
    g.call<Job>('POST', `/v1/gpus/${uuid}/smoke`, { body: { image: TEST_IMAGE, command } });

  assert.equal((await smoke(U1, ['true'])).status, 409, 'a healthy card has nothing to check');
  assert.equal((await g.call('POST', `/v1/gpus/${U1}/drain`, { body: { reason: 'reseated' } })).status, 200);
  const waiter = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo $NVIDIA_VISIBLE_DEVICES'], gpus: { ids: [U1] } });
  assert.equal((await g.waitFor(waiter.id, (j) => j.waiting?.code === 'gpus_out_of_service')).state, 'queued');
  const asOps = await client(g.url, 'ops-token-0123456789abcdefgh').call('POST', `/v1/gpus/${U1}/smoke`, {
    body: { image: TEST_IMAGE, command: ['true'] },
  });
  assert.equal(asOps.status, 403, 'admins only');

  const failing = await smoke(U1, ['sh', '-c', 'echo "visible: $NVIDIA_VISIBLE_DEVICES"; exit 7']);
  assert.equal(failing.status, 202, failing.text);
  assert.equal(failing.headers.location, `/v1/jobs/${failing.body.id}`);
  assert.equal(failing.body.name, 'gpu-smoke');
  assert.equal((await smoke(U1, ['true'])).status, 409, 'one smoke job per card at a time');
  const failed = await g.waitFor(failing.body.id);
  assert.equal(failed.state, 'failed');
  assert.deepEqual(failed.gpus, [U1], 'the smoke job got the card out of service');
  assert.equal((await g.call('GET', `/v1/jobs/${failed.id}/logs`)).text, `visible: ${U1}\n`);
  let h = await eventually('the smoke job recorded', async () => {
    const x = await healthOf(U1);
    return x.smokeJob === null ? x : undefined;
  });
  assert.equal(h.state, 'drained');
  assert.match(h.reason ?? '', new RegExp(`^reseated; smoke job ${failed.id} did not pass: exited with code 7`));
  assert.equal((await g.job(waiter.id)).state, 'queued', 'the card is still out: the job naming it waits');

  const passing = await smoke(U1, ['true']);
  assert.equal(passing.status, 202, passing.text);
  assert.equal((await g.waitFor(passing.body.id)).state, 'succeeded');
  h = await eventually('the card healthy', async () => {
    const x = await healthOf(U1);
    return x.state === 'healthy' ? x : undefined;
  });
  assert.deepEqual(h, { state: 'healthy', code: null, reason: null, since: null, by: null, smokeJob: null });
  const ran = await g.waitFor(waiter.id);
  assert.equal(ran.state, 'succeeded');
  assert.deepEqual(ran.gpus, [U1]);

  const audit = (await g.call<{ items: AuditRecord[] }>('GET', '/v1/audit?action=gpu.smoke')).body.items;
  assert.deepEqual(audit.map((r) => [r.outcome, r.target]).sort(), [
    ['ok', U1],
    ['ok', U1],
    ['refused', U1],
    ['refused', U1],
    ['refused', U1],
  ]);
});
