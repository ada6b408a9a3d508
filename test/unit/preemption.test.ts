import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import { choosePreemption, type RunningJob } from '../../src/scheduling/preemption.js';
import { type Quota, Quotas } from '../../src/scheduling/quotas.js';
import { prng } from '../helpers/records.js';

const devices = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ index: i, uuid: `GPU-${i}`, name: 'NVIDIA H200', memoryMiB: 143771 }));

test('the fewest, lowest-priority, latest-started preemptible jobs that make room; none when no rule allows enough', () => {
  const gpus = new GpuAllocator(devices(4));
  const running: RunningJob[] = [
    { jobId: 'old-low', owner: 'o', priority: 0, preemptible: true, startedAt: 1, gpus: 1 },
    { jobId: 'new-low', owner: 'o', priority: 0, preemptible: true, startedAt: 2, gpus: 1 },
    { jobId: 'lowest', owner: 'o', priority: -5, preemptible: true, startedAt: 0, gpus: 1 },
    { jobId: 'fixed', owner: 'o', priority: -9, preemptible: false, startedAt: 3, gpus: 1 },
  ];
  for (const r of running) gpus.tryAllocate(r.jobId, { count: 1 });
  const choose = (want: number, priority = 10) =>
    choosePreemption({
      waiting: { jobId: 'w', owner: 'x', priority, gpus: { count: want } },
      running,
      gpus,
      quotas: new Quotas(),
      teamGpus: () => 0,
    })?.map((v) => v.jobId) ?? null;
  assert.deepEqual(choose(1), ['lowest']);
  assert.deepEqual(choose(2), ['lowest', 'new-low']);
  assert.deepEqual(choose(3), ['lowest', 'new-low', 'old-low']);
  assert.equal(choose(4), null, 'the job that is not preemptible keeps its GPU, so 4 never fit');
  assert.deepEqual(choose(1, -1), ['lowest'], 'only lower priorities');
  assert.equal(choose(1, -5), null, 'an equal priority is never preempted without a share owed');
});

test("a victim's reason names the job it gives way to only when that job is its own owner's; never another team's name or share", () => {
  const gpus = new GpuAllocator(devices(2));
  const running: RunningJob[] = [
    { jobId: 'alices', owner: 'alice', priority: 0, preemptible: true, startedAt: 1, gpus: 1 },
    { jobId: 'borrowing', owner: 'carol', priority: 5, preemptible: true, startedAt: 2, gpus: 1 },
  ];
  for (const r of running) gpus.tryAllocate(r.jobId, { count: 1 });
  const quotas = new Quotas([
    { name: 'lenders', owners: ['carol'], gpus: 0, borrowGpus: 2 },
    { name: 'secret-team', owners: ['bob'], gpus: 2 },
  ] as Quota[]);
  const reasons = (owner: string, priority: number, want = 1) =>
    (
      choosePreemption({
        waiting: { jobId: 'waiter-id', owner, priority, gpus: { count: want } },
        running,
        gpus,
        quotas,
        teamGpus: (t) => (t.name === 'lenders' ? 1 : 0),
      }) ?? []
    ).map((v) => v.reason);
  assert.deepEqual(reasons('alice', 9), ['preempted for job waiter-id, of a higher priority (9 > 0)'], 'its own job is named');
  const [byPriority] = reasons('bob', 9);
  assert.equal(byPriority, "preempted for a job with a better claim: a higher priority than this job's 0");
  const both = reasons('bob', 5, 2).join(' | ');
  assert.match(both, /team "lenders" holds more than its 0 GPUs/);
  for (const leak of ['waiter-id', 'secret-team', 'bob', '9', ' 2 GPUs']) assert.ok(!`${byPriority} | ${both}`.includes(leak), leak);
});

test('property: every preemption is justified by its rule, frees enough, takes back no more than a team borrows, and is minimal', () => {
  let preemptions = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const rnd = prng(seed);
    const cards = 2 + Math.floor(rnd() * 6);
    const gpus = new GpuAllocator(devices(cards));
    const teams: Quota[] = [
      { name: 'a', owners: ['a1', 'a2'], gpus: Math.floor(rnd() * cards), borrowGpus: cards },
      { name: 'b', owners: ['b1'], gpus: Math.floor(rnd() * cards), borrowGpus: cards },
    ];
    const quotas = new Quotas(teams);
    const owners = ['a1', 'a2', 'b1', 'loner'];
    const running: RunningJob[] = [];
    for (let i = 0; i < cards * 2; i++) {
      const want = 1 + Math.floor(rnd() * 2);
      const id = `r${i}`;
      if (!gpus.tryAllocate(id, { count: want })) continue;
      running.push({
        jobId: id,
        owner: owners[Math.floor(rnd() * owners.length)]!,
        priority: Math.floor(rnd() * 3),
        preemptible: rnd() < 0.7,
        startedAt: Math.floor(rnd() * 1000),
        gpus: want,
      });
    }
    const held = new Map<string, number>();
    for (const r of running) {
      const t = quotas.teamOf(r.owner);
      if (t) held.set(t.name, (held.get(t.name) ?? 0) + r.gpus);
    }
    const teamGpus = (t: Quota) => held.get(t.name) ?? 0;
    const waiting = {
      jobId: 'w',
      owner: owners[Math.floor(rnd() * owners.length)]!,
      priority: Math.floor(rnd() * 3),
      gpus: { count: 1 + Math.floor(rnd() * 3) },
    };
    const fits = (ids: readonly string[]) => {
      const what = gpus.clone();
      for (const id of ids) what.release(id);
      return what.tryAllocate('w', waiting.gpus) !== null;
    };
    // Preemption is asked for only by a job that cannot start as things are.
    if (fits([])) continue;
    const victims = choosePreemption({ waiting, running, gpus, quotas, teamGpus });
    if (victims === null) {
      const byPriority = running.filter((r) => r.preemptible && r.priority < waiting.priority).map((r) => r.jobId);
      assert.ok(!fits(byPriority), `seed ${seed}: the lower priorities alone would have made room`);
      continue;
    }
    preemptions++;
    const ids = victims.map((v) => v.jobId);
    assert.ok(fits(ids), `seed ${seed}: the waiting job fits once they stop`);
    for (const [i] of ids.entries()) assert.ok(!fits(ids.filter((_, j) => j !== i)), `seed ${seed}: ${ids[i]} was not needed`);
    const takenBack = new Map<string, number>();
    for (const v of victims) {
      const r = running.find((x) => x.jobId === v.jobId)!;
      assert.ok(r.preemptible, `seed ${seed}: ${r.jobId} is preemptible`);
      if (v.rule === 'priority') {
        assert.ok(r.priority < waiting.priority, `seed ${seed}: a lower priority`);
        continue;
      }
      const theirs = quotas.teamOf(r.owner)!;
      const mine = quotas.teamOf(waiting.owner);
      assert.ok(mine && mine !== theirs, `seed ${seed}: another team`);
      assert.ok(teamGpus(mine) + waiting.gpus.count <= mine.gpus!, `seed ${seed}: the waiting team is within its share`);
      takenBack.set(theirs.name, (takenBack.get(theirs.name) ?? 0) + r.gpus);
      assert.ok(takenBack.get(theirs.name)! <= teamGpus(theirs) - theirs.gpus!, `seed ${seed}: no more than team ${theirs.name} borrows`);
    }
  }
  assert.ok(preemptions > 50, `the runs exercise preemption (${preemptions})`);
});
