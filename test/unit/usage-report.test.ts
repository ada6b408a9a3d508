/**
 * The usage report (src/jobs/usage-report.ts) over a real SQLite store: jobs
 * run on two nodes with different cards are billed by the model each node's
 * inventory names, weighted by GANTRY_GPU_MODEL_WEIGHTS; a card no node lists
 * is "unknown" and weighs 1; `owner` narrows the report.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { settleAttempt } from '../../src/jobs/retry-policy.js';
import { UsageReporter } from '../../src/jobs/usage-report.js';
import type { JobSpec } from '../../src/model/job.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { RUN_SETTINGS } from '../helpers/records.js';

const T0 = Date.parse('2026-05-01T00:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();
const SPEC: JobSpec = { image: 'local/busybox:latest', command: ['true'] };

async function open(t: TestContext): Promise<Store> {
  const store = await openSqliteStore(fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-usage-report-')));
  t.after(() => store.close());
  return store;
}

let ids = 0;
/** A job of `owner` that ran on `gpus` of `node` from minute `start` to minute `end` (null: still running). */
async function ran(store: Store, owner: string, node: { name: string; epoch: number }, gpus: string[], start: number, end: number | null) {
  const id = `job-${++ids}`;
  await store.jobs.insert({
    id,
    owner,
    spec: SPEC,
    specHash: 'h',
    idempotencyKey: null,
    requestId: null,
    createdAt: at(start),
    settings: RUN_SETTINGS,
  });
  const fence = { node: node.name, attempt: 1, epoch: 1 };
  assert.ok(await store.jobs.claim(id, node));
  await store.jobs.update(id, { state: 'starting', gpus }, { state: 'queued', fence });
  const running = await store.jobs.update(id, { state: 'running', startedAt: at(start) }, { state: 'starting', fence });
  if (end === null) return;
  const { patch } = settleAttempt(running!, { outcome: 'succeeded', cause: null, reason: null, exitCode: 0 }, new Date(T0 + end * 60_000));
  assert.equal((await store.jobs.update(id, patch, { state: 'running', fence }))?.state, 'succeeded');
}

test('billed per model from the nodes’ inventories, weighted; an unknown card weighs 1; owner narrows', async (t) => {
  const store = await open(t);
  const gpu = (uuid: string, name: string) => ({ index: 0, uuid, name, memoryMiB: 143771 });
  const a = await store.nodes.register({ name: 'a', labels: {}, gpus: [gpu('GPU-h200', 'NVIDIA H200')], version: 't', leaseSeconds: 30 });
  const b = await store.nodes.register({
    name: 'b',
    labels: {},
    gpus: [gpu('GPU-a100', 'NVIDIA A100-SXM4-80GB')],
    version: 't',
    leaseSeconds: 30,
  });
  await ran(store, 'alice', a, ['GPU-h200'], 0, 60); // 1 h of H200
  await ran(store, 'alice', b, ['GPU-a100'], 0, 30); // 0.5 h of A100
  await ran(store, 'alice', b, ['GPU-retired'], 0, 60); // 1 h on a card no node lists now
  await ran(store, 'bob', a, ['GPU-h200'], 90, null); // running: 0.5 h by minute 120

  const reporter = new UsageReporter({
    jobs: store.jobs,
    nodes: store.nodes,
    weights: [
      { model: 'h200', weight: 2 },
      { model: 'A100', weight: 1.5 },
    ],
  });
  const report = await reporter.report({ from: at(0), to: at(180) }, T0 + 120 * 60_000);
  assert.deepEqual(report, {
    from: at(0),
    to: at(180),
    items: [
      {
        owner: 'alice',
        gpuSeconds: 9000,
        gpuHours: 2.5,
        weightedGpuHours: 2 + 1 + 0.75,
        jobs: 3,
        attempts: 3,
        byModel: [
          { model: 'NVIDIA H200', weight: 2, gpuSeconds: 3600, gpuHours: 1, weightedGpuHours: 2 },
          { model: 'unknown', weight: 1, gpuSeconds: 3600, gpuHours: 1, weightedGpuHours: 1 },
          { model: 'NVIDIA A100-SXM4-80GB', weight: 1.5, gpuSeconds: 1800, gpuHours: 0.5, weightedGpuHours: 0.75 },
        ],
      },
      {
        owner: 'bob',
        gpuSeconds: 1800,
        gpuHours: 0.5,
        weightedGpuHours: 1,
        jobs: 1,
        attempts: 1,
        byModel: [{ model: 'NVIDIA H200', weight: 2, gpuSeconds: 1800, gpuHours: 0.5, weightedGpuHours: 1 }],
      },
    ],
  });
  const bobOnly = await reporter.report({ from: at(0), to: at(180), owner: 'bob' }, T0 + 120 * 60_000);
  assert.deepEqual(
    bobOnly.items.map((i) => i.owner),
    ['bob'],
  );
  const early = await reporter.report({ from: at(0), to: at(15) }, T0 + 120 * 60_000);
  assert.deepEqual(
    early.items.map((i) => [i.owner, i.gpuSeconds]),
    [['alice', 3 * 900]],
    'clipped to the window',
  );
});
