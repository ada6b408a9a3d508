import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config.js';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import { StoreUnavailableError } from '../../src/model/errors.js';
import type { Job } from '../../src/model/job.js';
import type { JobRun, RunEnd } from '../../src/runner/job-run.js';
import { NodeRuns } from '../../src/runner/node-runs.js';
import { releaseOrphanGpus } from '../../src/runner/reconcile.js';
import { type ContainerRuntime, MANAGED_LABELS, type ManagedContainer } from '../../src/runtime/runtime.js';
import type { Store } from '../../src/store/store.js';
import { jobRecord } from '../helpers/records.js';
import { harness, spec } from '../helpers/scheduler-harness.js';

// Level-triggered: what the store says this node should run is the truth,
// and notifications are hints. Each test takes a hint away (a cancel never
// announced, a claim whose reply was lost, a claim that failed) and checks
// the node still converges: the cancel is honoured, the job runs once, and
// no GPU stays held by a job that does not run.

// A 3 s lease: the node converges every second.
const config = loadConfig({ GANTRY_DATA_DIR: os.tmpdir(), GANTRY_STOP_GRACE_SECONDS: '0', GANTRY_NODE_LEASE_SECONDS: '3' });
const gpuDevices = [{ index: 0, uuid: 'GPU-0', name: 'NVIDIA H200', memoryMiB: 143771 }];
const running = (j: Job) => j.state === 'running';
const LEASE_MS = 3000;

/** Waits until no job holds a GPU (a run releases them once its end is recorded and its container removed). */
async function gpusFree(h: { gpus: { holdingJobs(): string[] } }): Promise<void> {
  const deadline = Date.now() + LEASE_MS;
  while (h.gpus.holdingJobs().length > 0) {
    if (Date.now() > deadline) assert.fail(`GPUs still held by ${h.gpus.holdingJobs().join(', ')}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Wraps the store's claim: `fault` decides per call whether it commits and then loses the reply, fails before it commits, or goes through. */
function faultyClaims(fault: () => 'lose-reply' | 'refuse' | null) {
  return (s: Store): Store => ({
    ...s,
    jobs: Object.assign(Object.create(s.jobs) as Store['jobs'], {
      claim: async (...args: Parameters<Store['jobs']['claim']>) => {
        const f = fault();
        if (f === 'refuse') throw new StoreUnavailableError('unavailable', 'connection refused');
        const claimed = await s.jobs.claim(...args);
        if (f === 'lose-reply') throw new StoreUnavailableError('unavailable', 'Connection terminated unexpectedly');
        return claimed;
      },
    }),
  });
}

test('a cancel the node never heard of (its notification lost) is honoured within the lease', async (t) => {
  const h = await harness(t, { config });
  const id = await h.submit();
  await h.until(id, running);
  // The cancel as another node writes it: in the store, with no event on this node.
  await h.store.jobs.update(id, { cancelRequested: true });
  const done = await h.until(id, undefined, LEASE_MS);
  assert.equal(done.state, 'cancelled');
  assert.equal(h.runtime.containers.size, 0);
});

test('a claim that committed but whose reply was lost: the job is released, claimed again, and runs once on its GPU', async (t) => {
  let calls = 0;
  const h = await harness(t, { config, gpuDevices, store: faultyClaims(() => (++calls === 1 ? 'lose-reply' : null)) });
  const id = await h.submit(spec({ gpus: { count: 1 } }));
  while (calls === 0) await new Promise((r) => setTimeout(r, 5));
  // The claim is in the store, but the node believes it failed: no run, no GPU held.
  const stranded = await h.store.jobs.get(id);
  assert.equal(stranded?.node, 'node-1');
  assert.deepEqual(h.gpus.holdingJobs(), [], 'the GPUs chosen for a failed claim are released at once');
  const started = await h.until(id, running, 2 * LEASE_MS);
  assert.deepEqual(started.gpus, ['GPU-0']);
  assert.ok(calls >= 2, 'claimed again after the reconcile released it');
  h.runtime.exit((await h.runtime.containerOf(id)).id, 0);
  const done = await h.until(id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.attempt, 1, 'one attempt: the lost reply cost the job nothing');
  assert.equal(h.runtime.calls.filter((op) => op === 'create').length, 1, 'one container');
  await gpusFree(h);
});

test('a claim the store refused holds no GPU, and the job starts once the store answers', async (t) => {
  let refusals = 3;
  const h = await harness(t, { config, gpuDevices, store: faultyClaims(() => (refusals-- > 0 ? 'refuse' : null)) });
  const id = await h.submit(spec({ gpus: { count: 1 } }));
  assert.deepEqual(h.gpus.holdingJobs(), []);
  await h.until(id, running, 2 * LEASE_MS);
  assert.deepEqual(h.gpus.holdingJobs(), [id]);
  h.runtime.exit((await h.runtime.containerOf(id)).id, 0);
  assert.equal((await h.until(id)).state, 'succeeded');
  await gpusFree(h);
});

test('an abandoned run keeps its GPUs until no container of the job runs; any other end releases them at once', async () => {
  const gpus = new GpuAllocator(gpuDevices.concat({ index: 1, uuid: 'GPU-1', name: 'NVIDIA H200', memoryMiB: 143771 }));
  const log = pino({ level: 'silent' });
  const runs = new NodeRuns(gpus, log);
  const launch = async (id: string, end: RunEnd) => {
    gpus.tryAllocate(id, { count: 1 });
    runs.launch({} as JobRun, jobRecord(1, { id, gpus: [gpus.allocationOf(id)!.uuids[0]!] }), async () => end);
    while (runs.has(id)) await new Promise((r) => setImmediate(r));
  };
  await launch('done', 'ended');
  assert.deepEqual(gpus.holdingJobs(), [], 'a run that ended frees its GPUs');
  await launch('abandoned', 'fenced');
  assert.deepEqual(gpus.holdingJobs(), ['abandoned'], 'its kill may have failed: the card stays held');
  let containers: ManagedContainer[] = [
    { id: 'c1', names: ['/gantry-abandoned'], labels: { [MANAGED_LABELS.jobId]: 'abandoned' }, state: 'running', created: 0 },
  ];
  const runtime = { listManaged: async () => containers } as unknown as ContainerRuntime;
  await releaseOrphanGpus({ gpus, runs, runtime, log });
  assert.deepEqual(gpus.holdingJobs(), ['abandoned'], 'still running on the card');
  containers = [];
  await releaseOrphanGpus({ gpus, runs, runtime, log });
  assert.deepEqual(gpus.holdingJobs(), [], 'its container gone, the card is free');
});
