import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import type { GpuRequest } from '../../src/model/job.js';
import { planQueue, type QueueEntry } from '../../src/scheduling/plan.js';
import { type Quota, Quotas, TeamLimits, type TeamUsage } from '../../src/scheduling/quotas.js';

const gpu = (index: number): GpuDevice => ({ index, uuid: `GPU-${index}`, name: 'H200', memoryMiB: 143771 });
const job = (id: string, owner: string, gpus?: GpuRequest): QueueEntry => ({ id, owner, gpus, timeoutSeconds: 3600 });

/** What the fleet already runs, by owner, and the GPUs each owner's next queued GPU job asks for. */
function usage(active: Record<string, { jobs: number; gpus: number }>, nextGpu: Record<string, number> = {}): TeamUsage {
  return {
    activeOf: (owners) =>
      owners.reduce((s, o) => ({ jobs: s.jobs + (active[o]?.jobs ?? 0), gpus: s.gpus + (active[o]?.gpus ?? 0) }), { jobs: 0, gpus: 0 }),
    nextGpuJobOf: (owners) => owners.map((o) => nextGpu[o]).find((n) => n !== undefined) ?? null,
  };
}

/** One pass over `entries` with the teams' limits, counting the entries it reads. */
function pass(teams: Quota[], entries: QueueEntry[], o: { gpus?: number; slots?: number; usage?: TeamUsage; held?: string[] } = {}) {
  const a = new GpuAllocator(Array.from({ length: o.gpus ?? 4 }, (_, i) => gpu(i)));
  for (const id of o.held ?? []) a.tryAllocate(id, { count: 1 });
  const limits = new TeamLimits(new Quotas(teams), o.usage ?? usage({}));
  const read: string[] = [];
  const plan = planQueue({
    queue: function* (skip) {
      for (const e of entries) {
        if (skip(e.owner, Boolean(e.gpus))) continue;
        read.push(e.id);
        yield e;
      }
    },
    limits,
    gpus: a,
    freeSlots: o.slots ?? 16,
    maxRunning: 16,
    running: [],
    now: 0,
  });
  const outcome = Object.fromEntries(plan.decisions.map((d) => [d.id, d.action === 'start' ? 'start' : d.wait.code]));
  return { plan, outcome, read, limits };
}

test('maxRunning: a team at its limit starts nothing more, its queue is read no further, others go on', () => {
  const teams = [{ name: 'ml', owners: ['alice', 'bob'], maxRunning: 2 }];
  const { outcome, read, plan, limits } = pass(
    teams,
    [job('a1', 'alice'), job('b1', 'bob'), job('a2', 'alice'), job('a3', 'alice'), job('c1', 'carol')],
    { usage: usage({ alice: { jobs: 1, gpus: 0 } }) },
  );
  assert.deepEqual(outcome, { a1: 'start', c1: 'start' });
  assert.deepEqual(read, ['a1', 'c1'], 'once the team is full, its queues are not read');
  assert.match(limits.closed('bob', false)?.text ?? '', /team "ml" runs 2 jobs, its maxRunning \(GANTRY_QUOTAS_FILE\)/);
  assert.equal(limits.closed('carol', false), null);
  assert.equal(plan.decisions.length, 2);
});

test('gpus and borrowGpus: within the share, then borrowing while no other team is owed, then no more', () => {
  const teams: Quota[] = [
    { name: 'ml', owners: ['alice'], gpus: 1, borrowGpus: 1 },
    { name: 'web', owners: ['carol'], gpus: 2 },
  ];
  const ml = [
    job('m1', 'alice', { count: 1 }),
    job('m2', 'alice', { count: 1 }),
    job('m3', 'alice', { count: 1 }),
    job('m4', 'alice', { count: 1 }),
  ];
  const idle = pass(teams, [...ml, job('cpu', 'alice')]);
  assert.deepEqual(
    idle.outcome,
    { m1: 'start', m2: 'start', m3: 'quota', cpu: 'start' },
    'm4 is not read: the team waits in its own order',
  );
  assert.match(
    idle.plan.decisions[2]!.action === 'wait' ? idle.plan.decisions[2]!.wait.text : '',
    /holds 2 of its 1 GPUs \(\+1 it may borrow\)/,
  );

  // Team web's next GPU job would start within its share: ml may not borrow.
  const owed = pass(teams, ml, { usage: usage({}, { carol: 1 }) });
  assert.deepEqual(owed.outcome, { m1: 'start', m2: 'quota' });
  assert.match(
    owed.plan.decisions[1]!.action === 'wait' ? owed.plan.decisions[1]!.wait.text : '',
    /team "ml" holds 1 of its 1 GPUs and this job, asking for 1, would borrow; .* team "web" does/,
  );

  // Web's next job would have to borrow too (it holds 1 of 2 and asks for 2): it has no better claim, so ml borrows.
  const notOwed = pass(teams, ml, { usage: usage({ carol: { jobs: 1, gpus: 1 } }, { carol: 2 }) });
  assert.deepEqual(notOwed.outcome, { m1: 'start', m2: 'start', m3: 'quota' });

  // A request over the share and the borrow together waits, and the team's smaller jobs behind it too.
  const big = pass(teams, [job('big', 'alice', { count: 3 }), job('small', 'alice', { count: 1 })]);
  assert.deepEqual(big.outcome, { big: 'quota' });
});

test('limits apply only to the owners of a team, and a quota refusal never becomes the GPU reservation', () => {
  const teams = [{ name: 'ml', owners: ['alice'], gpus: 0 }];
  const { outcome } = pass(teams, [job('a', 'alice', { count: 1 }), job('c', 'carol', { count: 1 })], { gpus: 1 });
  assert.deepEqual(outcome, { a: 'quota', c: 'start' });
});
