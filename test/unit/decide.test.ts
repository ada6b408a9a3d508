import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import type { JobSpec } from '../../src/model/job.js';
import type { WaitInfo } from '../../src/model/queue.js';
import { decide, type NodeRun, type PassInput, preview } from '../../src/scheduling/decide.js';
import { FairShare } from '../../src/scheduling/fair-share.js';
import { QueueState } from '../../src/scheduling/queue-state.js';
import { Quotas } from '../../src/scheduling/quotas.js';
import type { JobRecord } from '../../src/store/store.js';
import { jobRecord, prng } from '../helpers/records.js';

// The scheduling pass as a pure function of its snapshot: what it decides
// for the queue, the runs and the GPUs it is given, and that it changes
// none of them (the scheduler applies the decision; the dry run only reads it).

const devices = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ index: i, uuid: `GPU-${i}`, name: 'NVIDIA H200', memoryMiB: 143771 }));
const gpuSpec = (count: number, extra: Partial<JobSpec> = {}) =>
  ({ image: 'local/busybox', command: ['true'], gpus: { count }, ...extra }) as JobSpec;
const elsewhere = (r: JobRecord) =>
  r.spec.placement?.node === 'other' ? { path: 'placement.node', message: 'asks for node "other"' } : null;

function snapshot(o: {
  queued?: JobRecord[];
  runs?: NodeRun[];
  gpus?: GpuAllocator;
  idle?: WaitInfo | null;
  shared?: boolean;
  maxRunning?: number;
}): PassInput {
  const queue = new QueueState(new FairShare(0, new Quotas()), elsewhere);
  queue.reset(o.queued ?? []);
  return {
    idle: o.idle ?? null,
    shared: o.shared ?? false,
    queue,
    runs: o.runs ?? [],
    preempting: new Map(),
    gpus: o.gpus ?? new GpuAllocator(devices(2)),
    quotas: new Quotas(),
    maxRunning: o.maxRunning ?? 10,
    now: 1_000_000,
  };
}

const run = (jobId: string, gpus: GpuAllocator, o: Partial<NodeRun> = {}): NodeRun => {
  gpus.tryAllocate(jobId, { count: o.gpus ?? 1 });
  return { jobId, owner: 'o', priority: 0, preemptible: false, startedAt: 1, gpus: 1, endsBy: 2_000_000, preempted: false, ...o };
};

test('a node that takes no job decides nothing: every queued job waits for that reason', () => {
  const idle = { code: 'node_drained', text: 'drained', estimatedStartAt: null };
  const d = decide(snapshot({ queued: [jobRecord(1)], idle }));
  assert.deepEqual(d.start, []);
  assert.deepEqual(d.fail, []);
  assert.equal(d.preempt, null);
  assert.deepEqual(d.outcome.node, idle);
});

test('starts in queue order within the run slots; never a job it already runs; alone it fails what it can never run, in a fleet it leaves it', () => {
  const gpus = new GpuAllocator(devices(2));
  const running = run('j9', gpus);
  const queued = [
    jobRecord(1),
    jobRecord(2, { priority: 5 }),
    jobRecord(3, { spec: { image: 'x', command: ['true'], placement: { node: 'other' } } as JobSpec }),
    jobRecord(9),
  ];
  const alone = decide(snapshot({ queued, gpus, runs: [running], maxRunning: 2 }));
  assert.deepEqual(
    alone.start.map((s) => s.record.id),
    ['j2'],
    'the higher priority first; one slot left; j9 is running',
  );
  assert.equal(alone.outcome.beyond.any?.code, 'run_slot');
  assert.deepEqual(
    alone.fail.map((f) => f.id),
    ['j3'],
  );
  assert.match(alone.fail[0]!.reason, /can no longer be met on this host: placement.node/);
  const fleet = decide(snapshot({ queued, gpus, runs: [running], maxRunning: 2, shared: true }));
  assert.deepEqual(fleet.fail, []);
});

test('the pass allocates on a copy: the GPUs it is given are unchanged, and its starts never share a card', () => {
  const gpus = new GpuAllocator(devices(4));
  const queued = [1, 2, 3, 4].map((i) => jobRecord(i, { spec: gpuSpec(i === 1 ? 2 : 1) }));
  const d = decide(snapshot({ queued, gpus }));
  assert.deepEqual(
    d.start.map((s) => s.record.id),
    ['j1', 'j2', 'j3'],
  );
  const cards = d.start.flatMap((s) => s.alloc?.uuids ?? []);
  assert.equal(new Set(cards).size, cards.length, 'no card given twice');
  assert.equal(cards.length, 4);
  for (const d of devices(4)) assert.deepEqual(gpus.holders(d.uuid), [], 'the real allocator holds nothing new');
  assert.equal(d.outcome.decided.get('j4')?.code, 'gpus');
});

test('preemption: the reservation holder takes a lower-priority preemptible run; while that stops nothing more is taken and its wait says so', () => {
  const gpus = new GpuAllocator(devices(1));
  const victim = run('low', gpus, { priority: 0, preemptible: true });
  const waiter = jobRecord(1, { priority: 10, spec: gpuSpec(1) });
  const first = decide(snapshot({ queued: [waiter], gpus, runs: [victim] }));
  assert.deepEqual(first.preempt?.waiter, 'j1');
  assert.deepEqual(
    first.preempt?.victims.map((v) => [v.jobId, v.rule]),
    [['low', 'priority']],
  );
  assert.match(first.outcome.decided.get('j1')!.text, /preempting job low for it/);
  const input = snapshot({ queued: [waiter], gpus, runs: [{ ...victim, preempted: true }] });
  const again = decide({ ...input, preempting: new Map([['j1', new Set(['low'])]]) });
  assert.equal(again.preempt, null, 'nothing more while the victim stops');
  assert.match(again.outcome.decided.get('j1')!.text, /preempting job low for it/);
  const unpreemptible = decide(snapshot({ queued: [waiter], gpus, runs: [{ ...victim, preemptible: false }] }));
  assert.equal(unpreemptible.preempt, null);
});

test("a waiting job's reason names only its own owner's victims; another owner's are counted, never named", () => {
  const gpus = new GpuAllocator(devices(2));
  const mine = run('mine-low', gpus, { priority: 0, preemptible: true });
  const theirs = run('bobs-secret-job', gpus, { owner: 'bob', priority: 0, preemptible: true, startedAt: 2 });
  const waiter = jobRecord(1, { priority: 10, spec: gpuSpec(2) });
  const d = decide(snapshot({ queued: [waiter], gpus, runs: [mine, theirs] }));
  assert.deepEqual(d.preempt?.victims.map((v) => v.jobId).sort(), ['bobs-secret-job', 'mine-low']);
  const text = d.outcome.decided.get('j1')!.text;
  assert.match(text, /; preempting job mine-low, 1 job of other owners for it$/);
  assert.ok(!text.includes('bobs-secret-job'), text);
});

test('the dry run is the same pass with the job in its place, and it preempts nothing', () => {
  const gpus = new GpuAllocator(devices(1));
  const victim = run('low', gpus, { preemptible: true });
  const input = snapshot({ gpus, runs: [victim] });
  const cpu = jobRecord(50);
  assert.match(preview(input, cpu, { name: 'n1', unfit: null }).text, /would start at once on node "n1"/);
  const gpu = jobRecord(51, { priority: 10, spec: gpuSpec(1) });
  const wait = preview(input, gpu, { name: 'n1', unfit: null });
  assert.equal(wait.code, 'gpus');
  assert.doesNotMatch(wait.text, /preempting/);
  const unfit = preview(input, cpu, { name: 'n1', unfit: { path: 'placement.node', message: 'asks for node "x"' } });
  assert.equal(unfit.code, 'not_here');
});

test('property: over random snapshots, a pass starts no job twice, gives no card twice, stays within its slots, and changes nothing it reads', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const rnd = prng(seed);
    const gpus = new GpuAllocator(devices(1 + Math.floor(rnd() * 8)));
    const runs: NodeRun[] = [];
    for (let i = 0; i < Math.floor(rnd() * 4); i++) {
      if (gpus.tryAllocate(`r${i}`, { count: 1 }))
        runs.push({
          jobId: `r${i}`,
          owner: 'o',
          priority: 0,
          preemptible: rnd() < 0.5,
          startedAt: i,
          gpus: 1,
          endsBy: 2_000_000 + i,
          preempted: false,
        });
    }
    const queued = Array.from({ length: Math.floor(rnd() * 30) }, (_, i) =>
      jobRecord(i + 1, {
        priority: Math.floor(rnd() * 3),
        spec: rnd() < 0.6 ? gpuSpec(1 + Math.floor(rnd() * 3)) : (jobRecord(0).spec as JobSpec),
      }),
    );
    const before = JSON.stringify(devices(8).map((d) => gpus.holders(d.uuid)));
    const maxRunning = 1 + Math.floor(rnd() * 8);
    const d = decide(snapshot({ queued, gpus, runs, maxRunning }));
    const ids = d.start.map((s) => s.record.id);
    assert.equal(new Set(ids).size, ids.length, `seed ${seed}: a job started twice`);
    assert.ok(ids.length <= Math.max(0, maxRunning - runs.length), `seed ${seed}: beyond the run slots`);
    const cards = d.start.flatMap((s) => s.alloc?.uuids ?? []);
    const held = new Set(runs.flatMap((r) => gpus.allocationOf(r.jobId)?.uuids ?? []));
    assert.equal(new Set(cards).size, cards.length, `seed ${seed}: a card given twice`);
    assert.ok(!cards.some((c) => held.has(c)), `seed ${seed}: a card given that a run holds`);
    assert.equal(JSON.stringify(devices(8).map((d) => gpus.holders(d.uuid))), before, `seed ${seed}: the snapshot's GPUs changed`);
  }
});
