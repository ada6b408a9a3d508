import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FairShare } from '../../src/scheduling/fair-share.js';
import { QueueState } from '../../src/scheduling/queue-state.js';
import { Quotas } from '../../src/scheduling/quotas.js';
import type { JobRecord } from '../../src/store/store.js';
import { prng, jobRecord as record } from '../helpers/records.js';

const HOUR = 3600_000;
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)), `${what}: ${a} ≠ ${b}`);

test('decayed use: an hour on one GPU ending now is worth (1 − ½)·H/ln2 GPU-seconds with a one-hour half-life, and halves each half-life', () => {
  const fair = new FairShare(3600, new Quotas());
  const now = 10 * HOUR;
  fair.add('a', 1, now - HOUR, now);
  close(fair.usage(now).get('owner:a')!, (0.5 * 3600) / Math.LN2, 'an hour, now');
  close(fair.usage(now + HOUR).get('owner:a')!, (0.25 * 3600) / Math.LN2, 'an hour later');
  // Two GPUs count twice; held GPUs count as they go, and released they count the same as added.
  const held = new FairShare(3600, new Quotas());
  held.hold('j1', 'b', 2, now - HOUR);
  close(held.usage(now).get('owner:b')!, (2 * 0.5 * 3600) / Math.LN2, 'two GPUs held for an hour');
  held.release('j1', now);
  close(held.usage(now).get('owner:b')!, (2 * 0.5 * 3600) / Math.LN2, 'the same once released');
  assert.equal(held.holdingOf('j1'), undefined);
  // Without a half-life there is no fair share: every rank is 0.
  const off = new FairShare(0, new Quotas());
  off.add('a', 8, 0, HOUR);
  assert.equal(off.ranks(HOUR)('a'), 0);
  assert.equal(off.enabled, false);
});

test("a team's owners count together against the team's share; an owner in no team has a share of 1", () => {
  const quotas = new Quotas([
    { name: 'vision', owners: ['ann', 'bob'], gpus: 4 },
    { name: 'nlp', owners: ['cat'], gpus: 2, share: 1 },
  ]);
  const fair = new FairShare(3600, quotas);
  const now = HOUR;
  fair.add('ann', 1, 0, now);
  fair.add('bob', 1, 0, now);
  fair.add('cat', 1, 0, now);
  fair.add('dan', 1, 0, now);
  const rank = fair.ranks(now);
  const unit = (0.5 * 3600) / Math.LN2;
  close(rank('ann'), (2 * unit) / 4, 'vision: two GPU-hours over 4');
  assert.equal(rank('ann'), rank('bob'));
  close(rank('cat'), unit, 'nlp: `share` wins over `gpus`');
  close(rank('dan'), unit, 'no team: share 1');
});

test('within a priority the owner with the least recent use goes first; priority still comes first; FIFO within an owner', () => {
  const fair = new FairShare(3600, new Quotas());
  const q = new QueueState(fair);
  const now = Date.now();
  fair.add('heavy', 4, now - HOUR, now);
  fair.add('light', 1, now - HOUR, now);
  const jobs = [
    record(1, { owner: 'heavy' }),
    record(2, { owner: 'heavy' }),
    record(3, { owner: 'light' }),
    record(4, { owner: 'fresh' }),
    record(5, { owner: 'heavy', priority: 5 }),
    record(6, { owner: 'light' }),
  ];
  for (const r of jobs) q.observe(r);
  const order = [...q.runnableInOrder(() => false)].map((r) => r.id);
  assert.deepEqual(order, ['j5', 'j4', 'j3', 'j6', 'j1', 'j2']);
  assert.deepEqual(
    order.map((id) => q.position(id)),
    [0, 1, 2, 3, 4, 5],
    'positions follow the same order',
  );
  assert.equal(q.placeFor('fresh', 0), 2, 'a new job of the unused owner goes after its own, before the others');
  assert.equal(q.placeFor('heavy', 0), 6);
  assert.equal(q.placeFor('heavy', 10), 0);
});

test('a running job counts from its start, once however often its record is seen, and adds to its owner when it ends', () => {
  const fair = new FairShare(3600, new Quotas());
  const q = new QueueState(fair);
  const start = Date.now() - HOUR;
  const running = record(1, {
    owner: 'a',
    state: 'running',
    node: 'n',
    gpus: ['GPU-1', 'GPU-2'],
    startedAt: new Date(start).toISOString(),
  });
  q.observe(running);
  q.observe({ ...running, containerId: 'c' });
  const now = Date.now();
  const expected = (2 * (1 - 2 ** -((now - start) / HOUR)) * 3600) / Math.LN2;
  assert.ok(Math.abs(fair.usage(now).get('owner:a')! - expected) < 1, 'counted once, from its start');
  const finishedAt = new Date(start + HOUR / 2).toISOString();
  q.observe({ ...running, state: 'succeeded', finishedAt });
  assert.equal(fair.holdingOf('j1'), undefined);
  const ended = (2 * (2 ** -((now - start - HOUR / 2) / HOUR) - 2 ** -((now - start) / HOUR)) * 3600) / Math.LN2;
  assert.ok(Math.abs(fair.usage(now).get('owner:a')! - ended) < 1, 'up to its end, not to now');
});

test('property: positions always equal the place in the merged order, over random owners, uses, priorities, arrivals and departures', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const rnd = prng(seed);
    const fair = new FairShare(600, new Quotas([{ name: 't', owners: ['o1', 'o2'], gpus: 2 }]));
    const q = new QueueState(fair);
    const owners = ['o1', 'o2', 'o3', 'o4', 'o5'];
    const now = Date.now();
    for (const o of owners) if (rnd() < 0.7) fair.add(o, 1 + Math.floor(rnd() * 4), now - rnd() * HOUR, now);
    const live: JobRecord[] = [];
    for (let seq = 1; seq <= 80; seq++) {
      const r = record(seq, { owner: owners[Math.floor(rnd() * owners.length)]!, priority: Math.floor(rnd() * 3) });
      q.observe(r);
      live.push(r);
      if (rnd() < 0.3) {
        const gone = live.splice(Math.floor(rnd() * live.length), 1)[0]!;
        q.observe({ ...gone, state: 'cancelled' });
      }
    }
    const order = [...q.runnableInOrder(() => false, q.order())].map((r) => r.id);
    assert.equal(order.length, live.length, `seed ${seed}`);
    for (const [i, id] of order.entries()) assert.equal(q.position(id), i, `seed ${seed}: ${id}`);
    for (let i = 1; i < order.length; i++) {
      const [a, b] = [q.all.get(order[i - 1]!)!, q.all.get(order[i]!)!];
      assert.ok(a.priority >= b.priority, `seed ${seed}: priority first`);
      if (a.owner === b.owner && a.priority === b.priority) assert.ok(a.seq < b.seq, `seed ${seed}: FIFO within an owner`);
    }
  }
});
