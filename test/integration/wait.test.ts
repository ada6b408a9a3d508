import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startGantry, TEST_IMAGE } from '../helpers/gantry.js';

test('sensor endpoint: 404 while running, 200 once succeeded, 303 to a non-HTTP URL once failed/cancelled/timed out or for no such job', async (t) => {
  const g = await startGantry(t, { GANTRY_POLL_MIN_INTERVAL_MS: '0', GANTRY_STOP_GRACE_SECONDS: '1' });
  const ok = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'sleep 1; echo 42'] });
  const pending = await g.call<{ type: string; state: string }>('GET', `/v1/jobs/${ok.id}/wait`);
  assert.equal(pending.status, 404);
  assert.match(pending.body.type, /job-pending$/);
  await g.waitFor(ok.id);
  const done = await g.call<{ state: string; result: string }>('GET', `/v1/jobs/${ok.id}/wait`);
  assert.equal(done.status, 200);
  assert.deepEqual([done.body.state, done.body.result], ['succeeded', '42']);

  const bad = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'exit 5'] });
  await g.waitFor(bad.id);
  const failed = await g.call<{ type: string; state: string; exitCode: number }>('GET', `/v1/jobs/${bad.id}/wait`);
  assert.equal(failed.status, 303);
  assert.equal(failed.headers.location, `gantry:jobs/${bad.id}?state=failed&exitCode=5`);
  assert.match(failed.body.type, /job-unsuccessful$/);
  assert.deepEqual([failed.body.state, failed.body.exitCode], ['failed', 5]);

  const slow = await g.submit({ image: TEST_IMAGE, command: ['sleep', '300'], timeoutSeconds: 1 });
  await g.waitFor(slow.id);
  const timedOut = await g.call<{ state: string }>('GET', `/v1/jobs/${slow.id}/wait`);
  assert.deepEqual([timedOut.status, timedOut.body.state], [303, 'timed_out']);

  const missing = await g.call<{ type: string }>('GET', '/v1/jobs/00000000-0000-0000-0000-000000000000/wait');
  assert.equal(missing.status, 303);
  assert.equal(missing.headers.location, 'gantry:jobs/00000000-0000-0000-0000-000000000000?state=not_found');
  assert.equal(pending.headers['retry-after'] !== undefined, true);
});

test('a client polling the sensor endpoint without pause is paced, not refused', async (t) => {
  const g = await startGantry(t, { GANTRY_POLL_MIN_INTERVAL_MS: '300' });
  const job = await g.submit({ image: TEST_IMAGE, command: ['sleep', '30'] });
  const t0 = Date.now();
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) statuses.push((await g.call('GET', `/v1/jobs/${job.id}/wait`)).status);
  const elapsed = Date.now() - t0;
  assert.deepEqual(statuses, [404, 404, 404, 404, 404]);
  assert.ok(elapsed >= 4 * 300 - 50, `5 back-to-back polls took ${elapsed} ms`);
  await g.call('POST', `/v1/jobs/${job.id}/cancel`);
  // Until it has ended, so Gantry removes the container before it stops.
  assert.equal((await g.waitFor(job.id)).state, 'cancelled');
});

test('refused polls of the sensor endpoint are paced too, so a revoked token cannot make a deferred sensor spin', async (t) => {
  const g = await startGantry(t, { GANTRY_POLL_MIN_INTERVAL_MS: '300' });
  const job = await g.submit({ image: TEST_IMAGE, command: ['true'] });
  const timed = async (path: string, token: string | null) => {
    const t0 = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await g.call('GET', path, { token })).status);
    return { statuses, ms: Date.now() - t0 };
  };
  const revoked = await timed(`/v1/jobs/${job.id}/wait`, 'a-token-that-was-revoked');
  assert.deepEqual(revoked.statuses, [401, 401, 401, 401, 401]);
  assert.ok(revoked.ms >= 4 * 300 - 50, `5 refused polls took ${revoked.ms} ms`);
  const missing = await timed(`/v1/jobs/${job.id}/wait`, null);
  assert.deepEqual(missing.statuses, [401, 401, 401, 401, 401]);
  assert.ok(missing.ms >= 4 * 300 - 50, `5 polls without a token took ${missing.ms} ms`);
  // Other routes answer a refusal at once.
  const plain = await timed(`/v1/jobs/${job.id}`, 'a-token-that-was-revoked');
  assert.deepEqual(plain.statuses, [401, 401, 401, 401, 401]);
  assert.ok(plain.ms < 4 * 300, `5 refused GETs took ${plain.ms} ms`);
  await g.waitFor(job.id);
});
