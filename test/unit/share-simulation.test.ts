import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DAY, type ShareSimConfig, simulateShare } from '../../bench/sections/share.js';

// Six simulated hours of the bench's day: both teams busy, then team b idle, then both again.
const SIX_HOURS: ShareSimConfig = {
  ...DAY,
  phases: [
    { name: '1 both busy', fromH: 0, toH: 2, busy: ['a', 'b'] },
    { name: '2 team b idle', fromH: 2, toH: 4, busy: ['a'] },
    { name: '3 both busy', fromH: 4, toH: 6, busy: ['a', 'b'] },
  ],
};

for (const seed of [1, 2, 3]) {
  test(`two teams on 4 GPUs, seed ${seed}: never more GPUs held than the host has or a team may hold, preemptions only of a borrowing team, every job ends`, () => {
    const r = simulateShare({ ...SIX_HOURS, seed });
    // The simulator checks after every pass and every preemption: GPUs held, each team's, and each victim against the borrowed rule.
    assert.deepEqual(r.violations, []);
    assert.ok(r.maxHeld <= 4, `${r.maxHeld} GPUs held at once`);
    assert.ok(r.maxTeamHeld.a <= 4 && r.maxTeamHeld.b <= 4, `a team held ${JSON.stringify(r.maxTeamHeld)}`);
    // Team b coming back finds team a borrowing its GPUs: the rule is exercised, not vacuous.
    assert.ok(r.preemptions > 0, 'no preemption happened');
    // The queue drains after the last submit: a job left then would wait forever.
    assert.equal(r.unfinished, 0);
    assert.ok(r.maxWaitMinutes.gpus2 < r.drainedAtH * 60, `a 2-GPU job waited ${r.maxWaitMinutes.gpus2} min`);
    // Team a used team b's idle share: it held more than its own 2 GPUs at some point.
    assert.ok(r.maxTeamHeld.a > 2);
  });
}
