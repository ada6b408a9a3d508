/**
 * The fault campaign's overlap check (test/chaos/invariants.ts) on tick
 * files written by hand: two attempts that ran at once pass only when the
 * earlier one's node was lost, and the longest overlap is what the ticks say.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { Attempt } from '../../src/model/attempt.js';
import type { Job } from '../../src/model/job.js';
import { checkRealOverlaps } from '../chaos/invariants.js';
import { type PlannedJob, type TrackedJob, tickFile } from '../chaos/jobs.js';
import { tempDir } from '../helpers/gantry.js';

const plan: PlannedJob = { index: 7, lines: 3, exit: 0, retry: true, preemptible: true, gpu: false, priority: 0, cancelAfterMs: null };

/** A job at attempt 2 whose first attempt ended for `cause`, and the ticks each attempt wrote (host uptime, seconds). */
function jobWith(dir: string, cause: Attempt['cause'], ticks: Record<number, number[]>): TrackedJob {
  for (const [n, ts] of Object.entries(ticks)) fs.writeFileSync(path.join(dir, tickFile(plan, n)), ts.map((x) => `${x}\n`).join(''));
  const first = { attempt: 1, cause, retried: true, node: 'a' } as Attempt;
  const last = { id: 'j7', attempt: 2, attempts: [first] } as unknown as Job;
  return { plan, id: 'j7', cancels: [], firstEnd: null, endChanged: null, last };
}

test('attempts that ran one after the other pass, whatever ended the first', () => {
  const dir = tempDir();
  const r = checkRealOverlaps(dir, [jobWith(dir, 'preempted', { 1: [10, 10.25, 10.5], 2: [11, 11.25] })]);
  assert.deepEqual(r, { violations: [], maxMs: 0 });
});

test('a preempted attempt still running when the next one started is a violation', () => {
  const dir = tempDir();
  const r = checkRealOverlaps(dir, [jobWith(dir, 'preempted', { 1: [10, 10.25, 10.5, 10.75], 2: [10.5, 10.75, 11] })]);
  assert.equal(r.maxMs, 250);
  assert.match(r.violations[0] ?? '', /attempt 1 \(preempted, on a\) still ran 250 ms into attempt 2/);
});

test("a lost node's attempt may run on into the next one only while that node's process was down (paused or killed), until it stops it", () => {
  const dir = tempDir();
  const job = jobWith(dir, 'node_lost', { 1: [10, 11, 12, 13], 2: [11.5, 12.5, 14] });
  const paused = { from: 9000, to: 12_500, kind: 'pause', node: 'a' };
  const excused = checkRealOverlaps(dir, [job], { windows: [paused], uptimeOffsetMs: 0, stopGraceSeconds: 0 });
  assert.deepEqual(excused, { violations: [], maxMs: 1500 });
  const cut = { ...paused, kind: 'cut' };
  const running = checkRealOverlaps(dir, [job], { windows: [cut], uptimeOffsetMs: 0, stopGraceSeconds: 0 });
  assert.match(
    running.violations[0] ?? '',
    /attempt 1 \(node_lost, on a\) still ran 1500 ms into attempt 2/,
    'a node merely cut off fences itself in time',
  );
  const longAfter = checkRealOverlaps(dir, [job], { windows: [{ ...paused, to: 10_000 }], uptimeOffsetMs: 0, stopGraceSeconds: 0 });
  assert.equal(longAfter.violations.length, 1, 'running on long after the process was back is a violation');
});
