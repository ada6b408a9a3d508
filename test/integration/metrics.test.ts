// /metrics in Prometheus text format, scraped from a live Gantry on the real
// Docker engine before and after a handful of jobs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { ConfigError, loadConfig } from '../../src/config.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import { ADMIN_TOKEN, type Client, client, startGantry, TEST_IMAGE, tempDir, testEnv, tokensFile } from '../helpers/gantry.js';

const TOKENS = {
  alice: 'alice-token-0123456789abcdef',
  prom: 'prometheus-token-0123456789ab',
  reader: 'reader-token-0123456789abcd',
};

const GPUS: GpuDevice[] = [
  { index: 0, uuid: 'GPU-aaaaaaaa-0000-0000-0000-000000000000', name: 'Test GPU', memoryMiB: 81920 },
  { index: 1, uuid: 'GPU-bbbbbbbb-0000-0000-0000-000000000000', name: 'Test GPU', memoryMiB: 81920 },
];

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sh', '-c', script], ...extra });

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (what this test needs of it). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

/** The value of the series with exactly these labels (0 when absent). */
function val(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  const s = samples.find(
    (x) => x.name === name && Object.keys(x.labels).length === want.length && want.every(([k, v]) => x.labels[k] === v),
  );
  return s?.value ?? 0;
}

async function scrape(c: Client, token: string | null = TOKENS.prom): Promise<Sample[]> {
  const r = await c.call('GET', '/metrics', { token });
  assert.equal(r.status, 200, r.text);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parse(r.text);
}

async function until(c: Client, pred: (s: Sample[]) => boolean, what: string): Promise<Sample[]> {
  for (let i = 0; i < 200; i++) {
    const s = await scrape(c);
    if (pred(s)) return s;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('metrics: jobs, queue, durations, GPUs, logs, SSE clients, HTTP latency and Docker errors change as jobs run', async (t) => {
  const file = tokensFile([
    { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
    { owner: 'alice', scopes: ['submit', 'read', 'cancel'], token: TOKENS.alice },
    { owner: 'ops', scopes: ['metrics'], token: TOKENS.prom },
    { owner: 'alice', scopes: ['read'], token: TOKENS.reader },
  ]);
  const g = await startGantry(
    t,
    // Root owners may name a user, so a name the image lacks makes a start fail.
    {
      GANTRY_TOKENS_FILE: file,
      GANTRY_MAX_RUNNING: '1',
      GANTRY_GPU_DRIVER: 'env',
      GANTRY_STOP_GRACE_SECONDS: '1',
      GANTRY_ALLOW_ROOT_OWNERS: 'alice',
    },
    { gpuDevices: GPUS },
  );
  const alice = client(g.url, TOKENS.alice);

  // Access: the `metrics` scope (or admin); nothing else.
  assert.equal((await g.call('GET', '/metrics', { token: null })).status, 401);
  assert.equal((await g.call('GET', '/metrics', { token: TOKENS.reader })).status, 403);
  assert.equal((await g.call('GET', '/no/such/route')).status, 404);
  assert.equal((await g.call('GET', '/metrics', { token: ADMIN_TOKEN })).status, 200);
  const prom = client(g.url, TOKENS.prom);
  assert.equal((await prom.call('GET', '/v1/jobs')).status, 403, 'a metrics token reads nothing else');

  const before = await scrape(g);
  for (const state of ['succeeded', 'failed', 'cancelled']) {
    assert.equal(val(before, 'gantry_job_duration_seconds_count', { state }), 0);
  }
  assert.equal(val(before, 'gantry_queue_length'), 0);
  assert.equal(val(before, 'gantry_gpu_allocated', { gpu: '0', uuid: GPUS[0]!.uuid }), 0);
  assert.equal(val(before, 'gantry_gpu_memory_mib', { gpu: '1', uuid: GPUS[1]!.uuid, name: 'Test GPU' }), 81920);
  assert.equal(val(before, 'gantry_docker_api_errors_total', { op: 'start' }), 0);
  assert.ok(
    before.some((s) => s.name === 'process_cpu_user_seconds_total'),
    'default process metrics are there',
  );

  // A GPU job holds the only run slot; the next job waits in the queue.
  const gpuJob = await alice.submit(sh('echo on the gpu; sleep 300', { gpus: { count: 1 } }));
  await alice.waitFor(gpuJob.id, (j) => j.state === 'running');
  const waiting = await alice.submit(sh('echo "waited its turn"; sleep 1.2; echo done'));
  const busy = await until(g, (s) => val(s, 'gantry_queue_length') === 1, 'a queued job');
  assert.equal(val(busy, 'gantry_jobs', { state: 'queued', owner: 'alice' }), 1);
  assert.equal(val(busy, 'gantry_jobs', { state: 'running', owner: 'alice' }), 1);
  assert.equal(val(busy, 'gantry_gpu_allocated', { gpu: '0', uuid: GPUS[0]!.uuid }), 1);
  assert.equal(val(busy, 'gantry_gpu_jobs', { gpu: '0', uuid: GPUS[0]!.uuid }), 1);
  assert.equal(val(busy, 'gantry_gpu_allocated_memory_mib', { gpu: '0', uuid: GPUS[0]!.uuid }), 81920, 'exclusive: the whole card');
  assert.equal(val(busy, 'gantry_gpu_allocated', { gpu: '1', uuid: GPUS[1]!.uuid }), 0);

  // An SSE follower is counted while connected.
  const follower = await request(`${g.url}/v1/jobs/${gpuJob.id}/logs`, {
    headers: { authorization: `Bearer ${TOKENS.alice}`, accept: 'text/event-stream' },
  });
  await until(g, (s) => val(s, 'gantry_sse_clients') === 1, 'one SSE client');
  follower.body.destroy();
  await until(g, (s) => val(s, 'gantry_sse_clients') === 0, 'no SSE client');

  await sleep(1000); // the queued job waits at least this long
  const oldest = val(await scrape(g), 'gantry_queue_oldest_wait_seconds');
  assert.ok(oldest >= 1, `oldest queued job waited ${oldest} s`);
  await alice.call('POST', `/v1/jobs/${gpuJob.id}/cancel`);
  assert.equal((await alice.waitFor(waiting.id)).state, 'succeeded');

  // More outcomes: another success, an exit 3, a Docker start failure, a cancel.
  const ok2 = await alice.submit(sh('echo second'));
  const bad = await alice.submit(sh('echo failing >&2; exit 3'));
  const noUser = await alice.submit(sh('true', { user: 'nosuchuser' }));
  assert.equal((await alice.waitFor(ok2.id)).state, 'succeeded');
  assert.equal((await alice.waitFor(bad.id)).state, 'failed');
  const nu = await alice.waitFor(noUser.id);
  assert.equal(nu.state, 'failed');
  assert.match(nu.reason!, /did not start/);
  const long = await alice.submit(sh('echo running; sleep 300'));
  await alice.waitFor(long.id, (j) => j.state === 'running');
  await alice.call('POST', `/v1/jobs/${long.id}/cancel`);
  assert.equal((await alice.waitFor(long.id)).state, 'cancelled');
  const gpuDone = await alice.waitFor(gpuJob.id);
  assert.equal(gpuDone.state, 'cancelled');

  const after = await until(
    g,
    (s) => val(s, 'gantry_jobs_finished_total', { state: 'cancelled', owner: 'alice' }) === 2,
    'all ends counted',
  );
  const delta = (name: string, labels: Record<string, string> = {}) => val(after, name, labels) - val(before, name, labels);

  // Jobs by state and owner (from the store) and ends counted as they happen.
  assert.equal(val(after, 'gantry_jobs', { state: 'succeeded', owner: 'alice' }), 2);
  assert.equal(val(after, 'gantry_jobs', { state: 'failed', owner: 'alice' }), 2);
  assert.equal(val(after, 'gantry_jobs', { state: 'cancelled', owner: 'alice' }), 2);
  assert.equal(val(after, 'gantry_jobs', { state: 'queued', owner: 'alice' }), 0, 'every state is reported for each owner');
  assert.equal(val(after, 'gantry_jobs', { state: 'running', owner: 'alice' }), 0);
  assert.equal(delta('gantry_jobs_finished_total', { state: 'succeeded', owner: 'alice' }), 2);
  assert.equal(delta('gantry_jobs_finished_total', { state: 'failed', owner: 'alice' }), 2);
  assert.equal(val(after, 'gantry_queue_length'), 0);
  assert.equal(val(after, 'gantry_queue_oldest_wait_seconds'), 0);

  // Run-time histogram by final state: counts, sums and buckets.
  assert.equal(delta('gantry_job_duration_seconds_count', { state: 'succeeded' }), 2);
  assert.ok(delta('gantry_job_duration_seconds_sum', { state: 'succeeded' }) >= 1.2, 'includes the 1.2 s sleep');
  assert.equal(delta('gantry_job_duration_seconds_bucket', { state: 'succeeded', le: '1' }), 1, 'the quick job is under 1 s');
  assert.equal(delta('gantry_job_duration_seconds_bucket', { state: 'succeeded', le: '5' }), 2);
  assert.equal(delta('gantry_job_duration_seconds_bucket', { state: 'succeeded', le: '+Inf' }), 2);
  assert.equal(delta('gantry_job_duration_seconds_count', { state: 'cancelled' }), 2);
  // The start failure never ran: it has no run time; the exit 3 has one.
  assert.equal(delta('gantry_job_duration_seconds_count', { state: 'failed' }), 1);

  // Queue wait: one observation per job that left the queue; the job behind the GPU job waited over a second.
  assert.equal(delta('gantry_queue_wait_seconds_count'), 6);
  assert.ok(delta('gantry_queue_wait_seconds_sum') >= 1, `queue wait sum ${delta('gantry_queue_wait_seconds_sum')}`);
  assert.ok(delta('gantry_queue_wait_seconds_bucket', { le: '0.5' }) <= 5, 'the waiting job is not in the lowest buckets');

  // Log bytes captured (stored): at least what the jobs printed.
  const printed = ['on the gpu', 'waited its turn', 'done', 'second', 'failing', 'running'].join('').length;
  assert.ok(delta('gantry_log_stored_bytes') >= printed, `log bytes grew by ${delta('gantry_log_stored_bytes')}`);
  assert.ok(delta('gantry_log_stored_records', { stream: 'stderr' }) >= 1);

  // Docker API errors: exactly the failed start.
  assert.equal(delta('gantry_docker_api_errors_total', { op: 'start' }), 1);
  assert.equal(delta('gantry_docker_api_errors_total', { op: 'create' }), 0);
  // Every engine call is timed by operation: six jobs made six containers (one of them failed to start).
  assert.equal(delta('gantry_docker_api_call_duration_seconds_count', { op: 'create' }), 6);
  assert.equal(delta('gantry_docker_api_call_duration_seconds_count', { op: 'start' }), 6);
  assert.equal(val(after, 'gantry_docker_api_call_duration_seconds_count', { op: 'wait' }), 0, 'waits last as long as jobs: not timed');

  // HTTP latency by route template and status.
  assert.equal(delta('gantry_http_request_duration_seconds_count', { method: 'POST', route: '/v1/jobs', status_code: '201' }), 6);
  assert.ok(delta('gantry_http_request_duration_seconds_count', { method: 'GET', route: '/v1/jobs/:id', status_code: '200' }) >= 6);
  assert.equal(val(after, 'gantry_http_request_duration_seconds_count', { method: 'GET', route: '/metrics', status_code: '401' }), 1);
  assert.equal(val(after, 'gantry_http_request_duration_seconds_count', { method: 'GET', route: '/metrics', status_code: '403' }), 1);
  assert.equal(
    val(after, 'gantry_http_request_duration_seconds_count', { method: 'GET', route: 'unmatched', status_code: '404' }),
    1,
    'a 404 is counted without its path',
  );
  assert.ok(
    !after.some((s) => s.name.startsWith('gantry_http_request_duration_seconds') && s.labels.route === '/v1/jobs/:id/logs'),
    'SSE streams are not counted as request latency',
  );
  const postSum = delta('gantry_http_request_duration_seconds_sum', { method: 'POST', route: '/v1/jobs', status_code: '201' });
  assert.ok(postSum > 0 && postSum < 30);
});

test('metrics: GANTRY_METRICS=open adds a no-token listener on GANTRY_METRICS_PORT; off serves nothing', async (t) => {
  const g = await startGantry(t, { GANTRY_METRICS: 'open', GANTRY_METRICS_PORT: '0' });
  // The open port follows the API's listen(), which does not wait for it.
  let addr = g.app.gantry.openMetrics?.address() ?? null;
  for (let i = 0; i < 100 && addr === null; i++) {
    await new Promise((r) => setTimeout(r, 20));
    addr = g.app.gantry.openMetrics?.address() ?? null;
  }
  assert.ok(addr, 'listening once the app listens');
  assert.notEqual(addr.port, Number(new URL(g.url).port));
  const open = client(`http://127.0.0.1:${addr.port}`, null);
  const r = await open.call('GET', '/metrics');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(r.text, /^# TYPE gantry_jobs gauge$/m);
  assert.equal((await open.call('GET', '/')).status, 404);
  assert.equal((await open.call('POST', '/metrics')).status, 404);
  // The API port still asks for a token.
  assert.equal((await g.call('GET', '/metrics', { token: null })).status, 401);
  assert.equal((await g.call('GET', '/metrics')).status, 200);
  await g.app.close();
  assert.equal(g.app.gantry.openMetrics?.address(), null, 'closed with the app');

  const off = await startGantry(t, { GANTRY_METRICS: 'off' });
  assert.equal((await off.call('GET', '/metrics')).status, 404);
  assert.equal(off.app.gantry.openMetrics, null);

  assert.throws(
    () => loadConfig(testEnv(tempDir(), { GANTRY_METRICS: 'open', GANTRY_PORT: '9000', GANTRY_METRICS_PORT: '9000' })),
    (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('GANTRY_METRICS_PORT')),
  );
});
