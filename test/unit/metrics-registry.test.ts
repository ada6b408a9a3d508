// Gantry's metrics without fastify: the registry scraped over a real SQLite
// store, a real GPU allocator and a job event hub, and the no-token listener
// of GANTRY_METRICS=open as a plain HTTP server.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import { JobEventHub } from '../../src/jobs/events.js';
import { type OpenMetricsListenerOptions, openMetricsListener } from '../../src/metrics/open-listener.js';
import { GantryMetrics } from '../../src/metrics/registry.js';
import type { Job, JobSpec } from '../../src/model/job.js';
import { EMPTY_LOG_STATE } from '../../src/model/log.js';
import { RUNTIME_OPS } from '../../src/runtime/runtime.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { RUN_SETTINGS } from '../helpers/records.js';

const GPUS: GpuDevice[] = [
  { index: 0, uuid: 'GPU-aaaaaaaa-0000-0000-0000-000000000000', name: 'Test GPU', memoryMiB: 81920 },
  { index: 1, uuid: 'GPU-bbbbbbbb-0000-0000-0000-000000000000', name: 'Test GPU', memoryMiB: 40960 },
];
const gpu = (i: 0 | 1) => ({ gpu: String(i), uuid: GPUS[i]!.uuid });
const SPEC: JobSpec = { image: 'local/busybox:latest', command: ['true'] } as JobSpec;

/** The value of the series with exactly these labels, or undefined when it is not exported. */
function val(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [];
    if (have.sort().join(',') === want) return m[3] === '+Inf' ? Infinity : Number(m[3]);
  }
  return undefined;
}

async function setup(t: TestContext, o: { store?: (s: Store) => Store } = {}) {
  const base = await openSqliteStore(fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-metrics-')));
  t.after(() => base.close());
  const store = o.store ? o.store(base) : base;
  const gpus = new GpuAllocator(GPUS);
  const events = new JobEventHub();
  const metrics = new GantryMetrics({ store, gpus, events, droppedLogLines: () => 7 });
  const submit = async (id: string, owner: string, createdAt = new Date().toISOString()) =>
    (
      await store.jobs.insert({
        id,
        owner,
        spec: SPEC,
        specHash: 'hash',
        idempotencyKey: null,
        requestId: null,
        createdAt,
        settings: RUN_SETTINGS,
      })
    ).record;
  return { store, gpus, events, metrics, submit };
}

/** A job as the API and the event hub show it. */
function view(over: Partial<Job> & Pick<Job, 'id' | 'state'>): Job {
  return {
    name: null,
    owner: 'alice',
    position: null,
    waiting: null,
    exitCode: null,
    reason: null,
    result: null,
    createdAt: new Date().toISOString(),
    startedAt: null,
    finishedAt: null,
    gpus: [],
    node: null,
    attempt: 1,
    attempts: [],
    notBefore: null,
    gpuTelemetry: null,
    pull: null,
    labels: {},
    cancelRequested: false,
    requestId: null,
    spec: SPEC,
    ...over,
  };
}

test('a scrape reads jobs, the queue, GPUs and stored logs through the store', async (t) => {
  const { store, gpus, metrics, submit } = await setup(t);
  await submit('a1', 'alice', new Date(Date.now() - 30_000).toISOString());
  await submit('a2', 'alice');
  await submit('a3', 'alice');
  await submit('b1', 'bob');
  await store.jobs.update('a3', { state: 'running', startedAt: new Date().toISOString() });
  assert.ok(gpus.tryAllocate('a3', { count: 1 }));
  assert.ok(gpus.tryAllocate('s1', { memoryMiB: 1000 }));
  assert.ok(gpus.tryAllocate('s2', { memoryMiB: 2000 }));
  await store.logs.append('a3', [{ stream: 'stdout', time: Date.now(), line: 'hello' }], {
    ...EMPTY_LOG_STATE,
    nextSeq: 2,
    stdoutRecords: 1,
    bytes: 6,
  });
  await store.logs.append('b1', [], { ...EMPTY_LOG_STATE, nextSeq: 4, stdoutRecords: 1, stderrRecords: 2, bytes: 100, truncated: true });

  const text = await metrics.scrape();
  assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);
  assert.match(text, /^# TYPE gantry_jobs gauge$/m);
  assert.match(text, /^# HELP gantry_jobs Jobs in the store, by state and owner \(every state is reported for each owner seen\)\.$/m);
  assert.ok(val(text, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics are there');

  assert.equal(val(text, 'gantry_jobs', { state: 'queued', owner: 'alice' }), 2);
  assert.equal(val(text, 'gantry_jobs', { state: 'running', owner: 'alice' }), 1);
  assert.equal(val(text, 'gantry_jobs', { state: 'queued', owner: 'bob' }), 1);
  assert.equal(val(text, 'gantry_jobs', { state: 'timed_out', owner: 'bob' }), 0, 'every state is reported for each owner');
  assert.equal(val(text, 'gantry_queue_length'), 3);
  const oldest = val(text, 'gantry_queue_oldest_wait_seconds')!;
  assert.ok(oldest >= 30 && oldest < 60, `oldest queued job waited ${oldest} s`);

  assert.equal(val(text, 'gantry_gpu_memory_mib', { ...gpu(1), name: 'Test GPU' }), 40960);
  assert.equal(val(text, 'gantry_gpu_allocated', gpu(0)), 1);
  assert.equal(val(text, 'gantry_gpu_jobs', gpu(0)), 1);
  assert.equal(val(text, 'gantry_gpu_allocated_memory_mib', gpu(0)), 81920, 'exclusive: the whole card');
  assert.equal(val(text, 'gantry_gpu_jobs', gpu(1)), 2);
  assert.equal(val(text, 'gantry_gpu_allocated_memory_mib', gpu(1)), 3000, 'shared: the declared amounts');

  assert.equal(val(text, 'gantry_log_stored_bytes'), 106);
  assert.equal(val(text, 'gantry_log_stored_records', { stream: 'stdout' }), 2);
  assert.equal(val(text, 'gantry_log_stored_records', { stream: 'stderr' }), 2);
  assert.equal(val(text, 'gantry_log_truncated_jobs'), 1);
  assert.equal(val(text, 'gantry_process_log_dropped_lines_total'), 7);

  // The next scrape reads the store again.
  await store.jobs.update('a1', { state: 'cancelled', finishedAt: new Date().toISOString() });
  gpus.release('a3');
  const next = await metrics.scrape();
  assert.equal(val(next, 'gantry_queue_length'), 2);
  assert.ok(val(next, 'gantry_queue_oldest_wait_seconds')! < 30);
  assert.equal(val(next, 'gantry_jobs', { state: 'cancelled', owner: 'alice' }), 1);
  assert.equal(val(next, 'gantry_gpu_allocated', gpu(0)), 0);
  assert.equal(val(next, 'gantry_gpu_allocated_memory_mib', gpu(0)), 0);
});

test('a scrape reads the store once per query, one query at a time (one pooled connection, not one per query)', async (t) => {
  const reads = new Map<string, number>();
  let open = 0;
  let mostOpen = 0;
  /** The store's `part`, its `methods` counted and watched for overlap. */
  const watched = <T extends object>(part: T, methods: (keyof T & string)[]): T =>
    Object.assign(
      Object.create(part),
      Object.fromEntries(
        methods.map((m) => [
          m,
          async (...args: unknown[]) => {
            reads.set(m, (reads.get(m) ?? 0) + 1);
            mostOpen = Math.max(mostOpen, ++open);
            try {
              return await (part[m] as (...a: unknown[]) => Promise<unknown>).apply(part, args);
            } finally {
              open--;
            }
          },
        ]),
      ),
    );
  const { metrics, submit } = await setup(t, {
    store: (s) => ({
      ...s,
      jobs: watched(s.jobs, ['countByStateAndOwner', 'queueSummary', 'holdingGpus', 'activeByNode']),
      logs: watched(s.logs, ['totals']),
      nodes: watched(s.nodes, ['list', 'gauges']),
    }),
  });
  await submit('a1', 'alice');
  assert.equal(val(await metrics.scrape(), 'gantry_queue_length'), 1);
  // The nodes' gauges in one read of counts: no node rows, no job rows.
  const once = ['countByStateAndOwner', 'gauges', 'queueSummary', 'totals'];
  assert.deepEqual(
    [...reads].sort(),
    once.map((m) => [m, 1]),
  );
  assert.equal(mostOpen, 1, 'never two reads at once');
  await submit('a2', 'alice');
  assert.equal(val(await metrics.scrape(), 'gantry_queue_length'), 2);
  assert.deepEqual(
    [...reads].sort(),
    once.map((m) => [m, 2]),
  );
});

test('a store that fails fails the scrape', async (t) => {
  const { metrics } = await setup(t, {
    store: (s) => ({ ...s, logs: Object.assign(Object.create(s.logs), { totals: () => Promise.reject(new Error('disk gone')) }) }),
  });
  await assert.rejects(metrics.scrape(), /disk gone/);
});

test('runtime errors are counted by operation, every operation from zero', async (t) => {
  const { metrics } = await setup(t);
  for (const op of RUNTIME_OPS) assert.equal(val(await metrics.scrape(), 'gantry_docker_api_errors_total', { op }), 0, op);
  metrics.runtimeError('start');
  metrics.runtimeError('start');
  metrics.runtimeError('pull');
  const text = await metrics.scrape();
  assert.equal(val(text, 'gantry_docker_api_errors_total', { op: 'start' }), 2);
  assert.equal(val(text, 'gantry_docker_api_errors_total', { op: 'pull' }), 1);
  assert.equal(val(text, 'gantry_docker_api_errors_total', { op: 'create' }), 0);
});

test('engine calls are timed by operation, except waits', async (t) => {
  const { metrics } = await setup(t);
  metrics.runtimeCall('create', 0.02);
  metrics.runtimeCall('create', 0.2);
  metrics.runtimeCall('wait', 3600);
  const text = await metrics.scrape();
  assert.equal(val(text, 'gantry_docker_api_call_duration_seconds_count', { op: 'create' }), 2);
  assert.equal(val(text, 'gantry_docker_api_call_duration_seconds_bucket', { op: 'create', le: '0.025' }), 1);
  assert.ok(Math.abs((val(text, 'gantry_docker_api_call_duration_seconds_sum', { op: 'create' }) ?? 0) - 0.22) < 1e-9);
  assert.equal(
    val(text, 'gantry_docker_api_call_duration_seconds_count', { op: 'wait' }),
    undefined,
    'a wait lasts as long as its job: not timed',
  );
});

test('status changes: the queue wait and the end of each job are observed once', async (t) => {
  const { events, metrics } = await setup(t);
  const now = Date.now();
  const createdAt = new Date(now - 20_000).toISOString();
  const startedAt = new Date(now - 10_000).toISOString();
  const finishedAt = new Date(now - 7_000).toISOString();
  events.publishStatus(view({ id: 'j1', state: 'queued', createdAt }));
  events.publishStatus(view({ id: 'j1', state: 'starting', createdAt }));
  events.publishStatus(view({ id: 'j1', state: 'running', createdAt, startedAt }));
  const done = view({ id: 'j1', state: 'succeeded', createdAt, startedAt, finishedAt, exitCode: 0 });
  events.publishStatus(done);
  events.publishStatus(done);
  // Never started: an end without a run time.
  events.publishStatus(view({ id: 'j2', state: 'failed', owner: 'bob', createdAt, finishedAt, reason: 'did not start' }));

  const text = await metrics.scrape();
  assert.equal(val(text, 'gantry_queue_wait_seconds_count'), 1);
  const wait = val(text, 'gantry_queue_wait_seconds_sum')!;
  assert.ok(wait >= 20 && wait < 30, `queue wait ${wait} s`);
  assert.equal(val(text, 'gantry_queue_wait_seconds_bucket', { le: '15' }), 0);
  assert.equal(val(text, 'gantry_queue_wait_seconds_bucket', { le: '30' }), 1);
  assert.equal(val(text, 'gantry_jobs_finished_total', { state: 'succeeded', owner: 'alice' }), 1);
  assert.equal(val(text, 'gantry_jobs_finished_total', { state: 'failed', owner: 'bob' }), 1);
  assert.equal(val(text, 'gantry_job_duration_seconds_count', { state: 'succeeded' }), 1);
  assert.equal(val(text, 'gantry_job_duration_seconds_sum', { state: 'succeeded' }), 3);
  assert.equal(val(text, 'gantry_job_duration_seconds_bucket', { state: 'succeeded', le: '1' }), 0);
  assert.equal(val(text, 'gantry_job_duration_seconds_bucket', { state: 'succeeded', le: '5' }), 1);
  assert.equal(val(text, 'gantry_job_duration_seconds_count', { state: 'failed' }), undefined);
});

test('SSE followers are counted while their connection lives', async (t) => {
  const { metrics } = await setup(t);
  const res = (): http.ServerResponse => new http.ServerResponse(new http.IncomingMessage(new Socket()));
  const a = res();
  const b = res();
  metrics.trackSse(a);
  metrics.trackSse(b);
  assert.equal(val(await metrics.scrape(), 'gantry_sse_clients'), 2);
  a.emit('close');
  assert.equal(val(await metrics.scrape(), 'gantry_sse_clients'), 1);
  b.emit('close');
  assert.equal(val(await metrics.scrape(), 'gantry_sse_clients'), 0);
});

function quietLog() {
  const errors: string[] = [];
  const log: OpenMetricsListenerOptions['log'] = {
    info: () => undefined,
    error: (_obj: unknown, msg?: string) => void errors.push(String(msg)),
  };
  return { log, errors };
}

test('open listener: GET and HEAD /metrics without a token, 404 for anything else', async (t) => {
  const { metrics } = await setup(t);
  const listener = openMetricsListener({ scrape: () => metrics.scrape(), contentType: metrics.contentType, log: quietLog().log });
  assert.equal(listener.address(), null);
  await listener.listen('127.0.0.1', 0);
  t.after(() => listener.close());
  const addr = listener.address();
  assert.ok(addr && addr.port > 0);
  const base = `http://127.0.0.1:${addr.port}`;

  const r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  assert.match(await r.text(), /^# TYPE gantry_jobs gauge$/m);
  assert.equal((await fetch(`${base}/metrics?x=1`)).status, 200);

  const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.match(head.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  assert.equal(await head.text(), '');

  const root = await fetch(`${base}/`);
  assert.equal(root.status, 404);
  assert.equal(await root.text(), 'only GET /metrics is served here\n');
  assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 404);

  await listener.close();
  assert.equal(listener.address(), null);
  await listener.close();
  await assert.rejects(fetch(`${base}/metrics`));
});

test('open listener: a failed scrape is a 500 and is logged; a taken port rejects listen', async (t) => {
  const { log, errors } = quietLog();
  const listener = openMetricsListener({ scrape: () => Promise.reject(new Error('store down')), contentType: 'text/plain', log });
  await listener.listen('127.0.0.1', 0);
  t.after(() => listener.close());
  const r = await fetch(`http://127.0.0.1:${listener.address()!.port}/metrics`);
  assert.equal(r.status, 500);
  assert.equal(await r.text(), 'scrape failed\n');
  assert.deepEqual(errors, ['metrics scrape failed']);

  const second = openMetricsListener({ scrape: async () => '', contentType: 'text/plain', log });
  await assert.rejects(second.listen('127.0.0.1', listener.address()!.port), { code: 'EADDRINUSE' });
  assert.equal(second.address(), null);
});
