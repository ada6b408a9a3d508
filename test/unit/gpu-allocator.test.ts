import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import type { GpuRequest } from '../../src/model/job.js';
import { BACKFILL_WINDOW, planQueue, type QueueEntry, type RunningJob } from '../../src/scheduling/plan.js';
import { prng } from '../helpers/records.js';

/** The GPUs a job holds, as the allocator's holders tell it (undefined when it holds none). */
function allocationOf(a: GpuAllocator, jobId: string): { uuids: string[]; memoryMiB: number | null } | undefined {
  const held = a.devices.flatMap((d) =>
    a
      .holders(d.uuid)
      .filter((h) => h.jobId === jobId)
      .map((h) => ({ uuid: d.uuid, memoryMiB: h.memoryMiB })),
  );
  return held.length > 0 ? { uuids: held.map((h) => h.uuid), memoryMiB: held[0]!.memoryMiB } : undefined;
}

const gpu = (index: number, memoryMiB = 81920): GpuDevice => ({ index, uuid: `GPU-${index}`, name: 'static', memoryMiB });

test('exclusive by default: a card goes to one job at a time, lowest index first', () => {
  const a = new GpuAllocator([gpu(0), gpu(1)]);
  assert.deepEqual(a.tryAllocate('j1', { count: 1 }), { uuids: ['GPU-0'], memoryMiB: null });
  assert.deepEqual(a.tryAllocate('j2', { count: 1 }), { uuids: ['GPU-1'], memoryMiB: null });
  assert.equal(a.tryAllocate('j3', { count: 1 }), null);
  assert.equal(a.tryAllocate('j4', { count: 1, memoryMiB: 1 }), null, 'no sharing on an exclusively held card');
  assert.equal(a.release('j1'), true);
  assert.equal(a.release('j1'), false, 'a second release is a no-op');
  assert.deepEqual(a.tryAllocate('j3', { count: 1 }), { uuids: ['GPU-0'], memoryMiB: null });
});

test('ids by UUID or index; a named card must be free', () => {
  const a = new GpuAllocator([gpu(0), gpu(1), gpu(2)]);
  assert.deepEqual(a.tryAllocate('j1', { ids: ['2', 'GPU-0'] }), { uuids: ['GPU-2', 'GPU-0'], memoryMiB: null });
  assert.equal(a.tryAllocate('j2', { ids: ['GPU-2'] }), null);
  assert.deepEqual(a.tryAllocate('j3', { count: 1 }), { uuids: ['GPU-1'], memoryMiB: null });
});

test('sharing by declared memory: two 40 GB jobs share an 80 GB card, a third waits, an exclusive job waits for both', () => {
  const a = new GpuAllocator([gpu(0)]);
  assert.deepEqual(a.tryAllocate('s1', { count: 1, memoryMiB: 40960 }), { uuids: ['GPU-0'], memoryMiB: 40960 });
  assert.deepEqual(a.tryAllocate('s2', { count: 1, memoryMiB: 40960 }), { uuids: ['GPU-0'], memoryMiB: 40960 });
  assert.equal(a.tryAllocate('s3', { count: 1, memoryMiB: 40960 }), null);
  assert.equal(a.tryAllocate('x', { count: 1 }), null);
  assert.deepEqual(
    a.holders('GPU-0').map((h) => h.jobId),
    ['s1', 's2'],
  );
  a.release('s1');
  assert.equal(a.tryAllocate('x', { count: 1 }), null, 'still shared by s2');
  a.release('s2');
  assert.deepEqual(a.tryAllocate('x', { count: 1 }), { uuids: ['GPU-0'], memoryMiB: null });
});

test('sharing picks the fullest card that still fits, keeping whole cards free', () => {
  const a = new GpuAllocator([gpu(0), gpu(1)]);
  a.tryAllocate('s1', { count: 1, memoryMiB: 30000 });
  a.tryAllocate('s2', { count: 1, memoryMiB: 30000 });
  assert.deepEqual(allocationOf(a, 's2')?.uuids, ['GPU-0']);
  assert.deepEqual(a.tryAllocate('x', { count: 1 })?.uuids, ['GPU-1']);
});

test('requests that can never fit are named; ones that can are not', () => {
  const a = new GpuAllocator([gpu(0, 81920), gpu(1, 40960)]);
  assert.match(a.impossible({ count: 3 })!, /asks for 3 GPU\(s\) but this host has 2/);
  assert.match(a.impossible({ ids: ['GPU-9', '7'] })!, /unknown GPU "GPU-9", "7"/);
  assert.match(a.impossible({ ids: ['0', 'GPU-0'] })!, /named twice/);
  assert.match(a.impossible({ count: 1, memoryMiB: 90000 })!, /asks for 90000 MiB but the largest GPU has 81920 MiB/);
  assert.equal(a.impossible({ count: 2 }), null);
  assert.equal(a.impossible({ ids: ['1'] }), null);
  assert.equal(a.impossible({ count: 1, memoryMiB: 81920 }), null);
  assert.match(new GpuAllocator([]).impossible({ count: 1 })!, /has 0/);
});

test('restore after a restart re-registers holdings, ignores GPUs no longer present, and is idempotent', () => {
  const a = new GpuAllocator([gpu(0), gpu(1)]);
  a.restore('old', { uuids: ['GPU-1', 'GPU-gone'], memoryMiB: null });
  a.restore('old', { uuids: ['GPU-1'], memoryMiB: null });
  assert.deepEqual(a.holders('GPU-1'), [{ jobId: 'old', memoryMiB: null }]);
  assert.deepEqual(a.tryAllocate('new', { count: 2 }), null);
  assert.deepEqual(a.tryAllocate('new', { count: 1 })?.uuids, ['GPU-0']);
  assert.equal(a.release('old'), true);
  assert.deepEqual(a.holders('GPU-1'), []);
});

/** A pass over `entries` with no GPU holder's end known (so no backfill). */
const pass = (entries: QueueEntry[], a: GpuAllocator, freeSlots: number, maxRunning: number, running: RunningJob[] = [], now = 0) =>
  planQueue({ queue: (skip) => inOrder(entries, skip), limits: null, gpus: a, freeSlots, maxRunning, running, now });
/** The entries in their order, passing over those `skip` names when it is asked (it may change as the pass goes). */
function* inOrder(entries: readonly QueueEntry[], skip: (owner: string, gpu: boolean) => boolean): IterableIterator<QueueEntry> {
  for (const e of entries) if (!skip(e.owner, Boolean(e.gpus))) yield e;
}
const job = (id: string, gpus?: GpuRequest, timeoutSeconds = 3600, owner = 'o'): QueueEntry => ({ id, owner, gpus, timeoutSeconds });

test('queue: strict order for GPU jobs, CPU jobs pass, run slots taken in order; the pass stops where the rest can only wait', () => {
  const a = new GpuAllocator([gpu(0), gpu(1)]);
  a.tryAllocate('running', { count: 1 });
  const plan = pass([job('big', { count: 2 }), job('small', { count: 1 }), job('cpu'), job('cpu2'), job('cpu3')], a, 1, 4);
  assert.deepEqual(
    plan.decisions.map((d) => [d.id, d.action, d.action === 'start' ? null : d.wait.code]),
    [
      ['big', 'wait', 'gpus'],
      ['small', 'wait', 'reserved_for:big'],
      ['cpu', 'start', null],
    ],
  );
  assert.equal(plan.beyond.any?.text, 'waiting for a run slot (GANTRY_MAX_RUNNING=4)');
  assert.equal(plan.beyond.reservation?.wait.code, 'reserved_for:big');
  assert.equal(allocationOf(a, 'small'), undefined, 'the small job did not overtake the big one');
});

test("queue: a job behind another owner's reservation is told of a job with a better claim, never its id", () => {
  const a = new GpuAllocator([gpu(0), gpu(1)]);
  a.tryAllocate('running', { count: 1 });
  const plan = pass(
    [job('big-of-alice', { count: 2 }, 3600, 'alice'), job('bobs', { count: 1 }, 3600, 'bob'), job('alices', { count: 1 }, 3600, 'alice')],
    a,
    4,
    4,
  );
  const waits = new Map(plan.decisions.map((d) => [d.id, d.action === 'wait' ? d.wait : null]));
  assert.equal(waits.get('alices')?.code, 'reserved_for:big-of-alice', "the reservation's owner is told which of its jobs");
  assert.equal(waits.get('bobs')?.code, 'reserved');
  assert.match(waits.get('bobs')!.text, /^waiting behind a job with a better claim/);
  assert.ok(!JSON.stringify([waits.get('bobs'), plan.beyond.gpu]).includes('big-of-alice'), 'no other owner reads the id');
});

test('queue: the reservation is when the running jobs end by their timeouts; only jobs ending before it backfill', () => {
  const a = new GpuAllocator([gpu(0), gpu(1)]);
  a.tryAllocate('r1', { count: 1 });
  const now = Date.parse('2026-01-01T00:00:00Z');
  const running = [{ jobId: 'r1', endsBy: now + 600_000 }];
  // big needs both cards: free once r1 ends, in 10 minutes at the latest.
  const plan = pass([job('big', { count: 2 }), job('long', { count: 1 }, 3600), job('short', { count: 1 }, 300)], a, 8, 8, running, now);
  assert.deepEqual(
    plan.decisions.map((d) => [d.id, d.action === 'start' ? 'start' : d.wait.code]),
    [
      ['big', 'gpus'],
      ['long', 'reserved_for:big'],
      ['short', 'start'],
    ],
  );
  const big = plan.decisions[0]!;
  assert.equal(big.action === 'wait' && big.wait.estimatedStartAt, '2026-01-01T00:10:00.000Z');
  assert.deepEqual(allocationOf(a, 'short')?.uuids, ['GPU-1'], 'the short job took the free card: it ends before the reservation');
});

test('queue: behind a reservation, a pass looks at a bounded number of GPU jobs, then at CPU jobs only', () => {
  const a = new GpuAllocator([gpu(0)]);
  a.tryAllocate('r1', { count: 1 });
  const gpuJobs = Array.from({ length: 10_000 }, (_, i) => job(`g${i}`, { count: 1 }));
  const cpuJobs = [job('cpu-late')];
  let read = 0;
  // Two queues, merged as QueueState merges the owners' queues: a closed one is read no further.
  const merged = function* (skip: (owner: string, gpu: boolean) => boolean) {
    let g = 0;
    let c = 0;
    for (;;) {
      const gpuOpen = g < gpuJobs.length && !skip('o', true);
      const cpuOpen = c < cpuJobs.length && !skip('o', false);
      if (!gpuOpen && !cpuOpen) return;
      read++;
      yield gpuOpen ? gpuJobs[g++]! : cpuJobs[c++]!;
    }
  };
  const plan = planQueue({ queue: merged, limits: null, gpus: a, freeSlots: 4, maxRunning: 4, running: [], now: 0 });
  assert.ok(read <= BACKFILL_WINDOW + 2, `read ${read} entries`);
  assert.deepEqual(plan.decisions.at(-1), { id: 'cpu-late', action: 'start', alloc: null }, 'a CPU job deep in the queue still starts');
  assert.equal(plan.beyond.reservation?.wait.code, 'reserved_for:g0');
  assert.equal(plan.beyond.gpu?.code, 'reserved');
});

// ---- randomized: arrivals, finishes and cancels ----------------------------

interface SimJob {
  id: string;
  seq: number;
  priority: number;
  gpus?: GpuRequest;
  state: 'queued' | 'running' | 'done' | 'cancelled';
  timeoutSeconds: number;
  startedAt?: number;
}

function simulate(seed: number, opts: { priorities: number[]; steps: number; maxRunning: number }) {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const devices = [gpu(0, 81920), gpu(1, 81920), gpu(2, 40960), gpu(3, 40960)];
  const a = new GpuAllocator(devices);
  const jobs: SimJob[] = [];
  const releases = new Map<string, number>();
  const startOrder: SimJob[] = [];
  let seq = 0;
  let now = 0;
  let backfills = 0;

  const request = (): GpuRequest | undefined => {
    const r = rnd();
    if (r < 0.15) return undefined; // CPU job
    if (r < 0.55) return { count: 1 + Math.floor(rnd() * 2) };
    if (r < 0.65) return { count: 4 };
    if (r < 0.8) return { ids: [pick(['0', '1', 'GPU-2', 'GPU-3'])] };
    return { count: 1, memoryMiB: pick([10240, 20480, 40960, 81920]) };
  };
  const release = (j: SimJob) => {
    if (a.release(j.id)) releases.set(j.id, (releases.get(j.id) ?? 0) + 1);
  };
  const schedule = () => {
    const queued = jobs.filter((j) => j.state === 'queued').sort((x, y) => y.priority - x.priority || x.seq - y.seq);
    const running = jobs.filter((j) => j.state === 'running').length;
    const entries: QueueEntry[] = queued.map((j) => job(j.id, j.gpus, j.timeoutSeconds));
    // One step is a second; a running job holds its GPUs until its timeout at the latest.
    const holders = jobs
      .filter((j) => j.state === 'running' && j.gpus)
      .map((j) => ({ jobId: j.id, endsBy: (j.startedAt! + j.timeoutSeconds) * 1000 }));
    const plan = pass(entries, a, opts.maxRunning - running, opts.maxRunning, holders, now * 1000);
    const byId = new Map(queued.map((j, i) => [j.id, i]));
    const reservation = plan.decisions.find((d) => d.action === 'wait' && d.wait.code === 'gpus');
    const reservedAt = reservation?.action === 'wait' ? reservation.wait.estimatedStartAt : null;
    plan.decisions.forEach((d) => {
      const i = byId.get(d.id)!;
      const j = queued[i]!;
      assert.equal(d.id, j.id);
      if (d.action !== 'start') return;
      // A GPU job starts ahead of one still waiting for GPUs in (priority,
      // FIFO) order only by backfill: it ends, by its timeout, before the
      // reservation of the oldest waiting one.
      if (j.gpus) {
        for (const ahead of queued.slice(0, i)) {
          if (ahead.gpus && ahead.state === 'queued') {
            const endsBy = (now + j.timeoutSeconds) * 1000;
            assert.ok(
              reservedAt !== null && endsBy <= Date.parse(reservedAt!),
              `${j.id} overtook ${ahead.id} without ending before the reservation`,
            );
            backfills++;
          }
        }
      }
      j.state = 'running';
      j.startedAt = now;
      startOrder.push(j);
    });
  };
  const checkInvariants = () => {
    for (const d of devices) {
      const hs = a.holders(d.uuid);
      if (hs.some((h) => h.memoryMiB === null)) assert.equal(hs.length, 1, `${d.uuid} exclusive but shared: ${JSON.stringify(hs)}`);
      const declared = hs.reduce((s, h) => s + (h.memoryMiB ?? 0), 0);
      assert.ok(declared <= d.memoryMiB, `${d.uuid} oversubscribed: ${declared} > ${d.memoryMiB}`);
      for (const h of hs)
        assert.equal(jobs.find((j) => j.id === h.jobId)?.state, 'running', `${h.jobId} holds ${d.uuid} but is not running`);
    }
    for (const j of jobs.filter((x) => x.state === 'running' && x.gpus)) {
      const alloc = allocationOf(a, j.id);
      assert.ok(alloc, `${j.id} runs without its GPUs`);
      const want = j.gpus!.ids ? j.gpus!.ids.length : j.gpus!.count!;
      assert.equal(new Set(alloc.uuids).size, want);
      if (j.gpus!.ids) assert.deepEqual([...alloc.uuids].sort(), j.gpus!.ids.map((id) => (/^\d+$/.test(id) ? `GPU-${id}` : id)).sort());
      assert.equal(alloc.memoryMiB, j.gpus!.memoryMiB ?? null);
    }
    assert.ok(jobs.filter((j) => j.state === 'running').length <= opts.maxRunning);
  };

  for (let step = 0; step < opts.steps; step++) {
    now++;
    const r = rnd();
    const running = jobs.filter((j) => j.state === 'running');
    const queued = jobs.filter((j) => j.state === 'queued');
    if (r < 0.45) {
      const j: SimJob = { id: `j${seq}`, seq: seq++, priority: pick(opts.priorities), state: 'queued', timeoutSeconds: pick([5, 30, 600]) };
      const g = request();
      if (g) j.gpus = g;
      assert.equal(j.gpus ? a.impossible(j.gpus) : null, null);
      jobs.push(j);
    } else if (r < 0.85 && running.length) {
      const j = pick(running); // finishes: succeeded, failed or timed out alike
      j.state = 'done';
      release(j);
    } else if (r < 0.95 && queued.length) {
      const j = pick(queued); // cancelled while queued: held nothing
      j.state = 'cancelled';
      assert.equal(allocationOf(a, j.id), undefined);
      release(j);
    } else if (running.length) {
      const j = pick(running); // cancelled while running
      j.state = 'cancelled';
      release(j);
    }
    schedule();
    checkInvariants();
  }
  // Drain: no more arrivals; everything queued must eventually run.
  for (let guard = 0; jobs.some((j) => j.state === 'queued' || j.state === 'running'); guard++) {
    assert.ok(guard < 10_000, 'the queue drains');
    now++;
    const running = jobs.filter((j) => j.state === 'running');
    if (running.length) {
      const j = running[0]!;
      j.state = 'done';
      release(j);
    }
    schedule();
    checkInvariants();
  }
  for (const d of devices) assert.deepEqual(a.holders(d.uuid), [], `${d.uuid} released`);
  for (const j of startOrder.filter((x) => x.gpus)) assert.equal(releases.get(j.id), 1, `${j.id} released exactly once`);
  for (const j of jobs.filter((x) => !x.gpus || x.startedAt === undefined)) assert.equal(releases.get(j.id), undefined);
  return { jobs, startOrder, backfills };
}

test('random arrivals, finishes and cancels at equal priority: never oversubscribed, all released, GPU jobs in FIFO order but for backfill that ends before the reservation', () => {
  let backfilled = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const { jobs, backfills } = simulate(seed, { priorities: [0], steps: 300, maxRunning: 6 });
    backfilled += backfills;
    const neverRan = jobs.filter((j) => j.state !== 'cancelled' && j.startedAt === undefined);
    assert.deepEqual(neverRan, [], `seed ${seed}: starved`);
  }
  assert.ok(backfilled > 0, 'the runs exercised backfill');
});

test('random arrivals with integer priorities: higher first, FIFO within a priority but for backfill, nobody left waiting at the end', () => {
  for (let seed = 1000; seed < 1200; seed++) {
    const { jobs } = simulate(seed, { priorities: [-5, 0, 0, 3], steps: 300, maxRunning: 8 });
    assert.deepEqual(
      jobs.filter((j) => j.state !== 'cancelled' && j.startedAt === undefined),
      [],
    );
  }
});
