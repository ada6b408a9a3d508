/**
 * The arithmetic of GPU usage accounting (src/jobs/usage.ts): which
 * intervals a job's record yields, how they are clipped to a window, and
 * how they add up per owner; the model weights, and the CSV export.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { usageCsv } from '../../src/api/routes/v1/usage.js';
import { modelWeight } from '../../src/jobs/usage-report.js';
import type { AttemptRecord } from '../../src/model/attempt.js';
import { usageWindow } from '../../src/model/usage.js';
import { gpuIntervals, gpuSecondsByOwner, overlapMs } from '../../src/scheduling/usage.js';
import type { JobRecord } from '../../src/store/store.js';
import { jobRecord } from '../helpers/records.js';

const T0 = Date.parse('2026-03-01T00:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();
const ms = (minutes: number) => T0 + minutes * 60_000;
const window = (from: number, to: number) => ({ fromMs: ms(from), toMs: ms(to) });

function ended(attempt: number, gpus: string[], start: number | null, end: number, retried = true): AttemptRecord {
  return {
    attempt,
    node: 'n',
    gpus,
    startedAt: start === null ? null : at(start),
    finishedAt: at(end),
    outcome: 'failed',
    cause: 'exit_code',
    retried,
    reason: null,
    exitCode: 1,
    logEnd: 0,
  };
}

let seq = 0;
function job(owner: string, r: Partial<JobRecord>): JobRecord {
  seq += 1;
  return jobRecord(seq, { id: `job-${seq}`, owner, state: 'running', node: 'n', createdAt: at(0), ...r });
}

test('a running attempt counts from its start to now; one that never started counts nothing', () => {
  const running = job('a', { gpus: ['G0', 'G1'], startedAt: at(10) });
  assert.deepEqual(gpuIntervals(running, ms(40)), [{ attempt: 1, gpus: ['G0', 'G1'], startMs: ms(10), endMs: ms(40) }]);
  const starting = job('a', { state: 'starting', gpus: ['G0'], startedAt: null });
  assert.deepEqual(gpuIntervals(starting, ms(40)), []);
  const cpuOnly = job('a', { startedAt: at(10) });
  assert.deepEqual(gpuIntervals(cpuOnly, ms(40)), []);
});

test('a retried job: each ended attempt once, the current one to now; an attempt that never started adds nothing', () => {
  const r = job('a', {
    attempt: 4,
    gpus: ['G1'],
    startedAt: at(50),
    attempts: [ended(1, ['G0'], 0, 10), ended(2, ['G0'], null, 12), ended(3, ['G0', 'G1'], 20, 30)],
  });
  assert.deepEqual(
    gpuIntervals(r, ms(60)).map((i) => [i.attempt, i.gpus.length, i.startMs, i.endMs]),
    [
      [1, 1, ms(0), ms(10)],
      [3, 2, ms(20), ms(30)],
      [4, 1, ms(50), ms(60)],
    ],
  );
});

test('an ended job counts its last attempt from the history, not again from the row (which keeps its GPUs and start)', () => {
  const done = job('a', {
    state: 'succeeded',
    gpus: ['G0'],
    startedAt: at(20),
    finishedAt: at(30),
    attempt: 2,
    attempts: [ended(1, ['G0'], 0, 10), { ...ended(2, ['G0'], 20, 30, false), outcome: 'succeeded', cause: null }],
  });
  assert.deepEqual(
    gpuIntervals(done, ms(1000)).map((i) => [i.attempt, i.endMs]),
    [
      [1, ms(10)],
      [2, ms(30)],
    ],
  );
});

test('an ended job whose last attempt is not in its history (a container found gone after a restart) counts to its finishedAt', () => {
  const vanished = job('a', { state: 'failed', gpus: ['G0'], startedAt: at(5), finishedAt: at(25) });
  assert.deepEqual(gpuIntervals(vanished, ms(1000)), [{ attempt: 1, gpus: ['G0'], startMs: ms(5), endMs: ms(25) }]);
});

test('an end before the start (two nodes’ clocks) is an empty interval, never a negative one', () => {
  const r = job('a', { attempts: [ended(1, ['G0'], 30, 20)], attempt: 2 });
  const [i] = gpuIntervals(r, ms(100));
  assert.equal(i!.endMs - i!.startMs, 0);
  assert.deepEqual(gpuSecondsByOwner([r], window(0, 100), ms(100)), []);
});

test('clipping: across the start, across the end, inside, around, and touching the edges of the half-open window', () => {
  const w = window(10, 20);
  assert.equal(overlapMs({ startMs: ms(5), endMs: ms(15) }, w), 5 * 60_000, 'across the start');
  assert.equal(overlapMs({ startMs: ms(15), endMs: ms(25) }, w), 5 * 60_000, 'across the end');
  assert.equal(overlapMs({ startMs: ms(12), endMs: ms(13) }, w), 60_000, 'inside');
  assert.equal(overlapMs({ startMs: ms(0), endMs: ms(30) }, w), 10 * 60_000, 'around');
  assert.equal(overlapMs({ startMs: ms(0), endMs: ms(10) }, w), 0, 'ends where the window starts');
  assert.equal(overlapMs({ startMs: ms(20), endMs: ms(30) }, w), 0, 'starts where the window ends (excluded)');
  assert.equal(overlapMs({ startMs: ms(30), endMs: ms(40) }, w), 0, 'after');
});

test('per owner: GPU-seconds times GPUs held, jobs and attempts that fall in the window, split by card; most first', () => {
  const records = [
    // a: attempt 1 on 2 cards across the window's start (5 min inside), attempt 2 on 1 card inside (3 min).
    job('a', { state: 'succeeded', attempt: 2, attempts: [ended(1, ['G0', 'G1'], 0, 15), ended(2, ['G1'], 16, 19, false)] }),
    // a: a running job on a shared card since minute 25: 5 min inside up to now (minute 40 > window end 30).
    job('a', { gpus: ['G2'], gpuMemoryMiB: 1000, startedAt: at(25) }),
    // b: the same shared card, its own whole count.
    job('b', { gpus: ['G2'], gpuMemoryMiB: 1000, startedAt: at(28) }),
    // c: entirely before the window.
    job('c', { state: 'succeeded', attempts: [ended(1, ['G0'], 0, 9, false)] }),
  ];
  const usage = gpuSecondsByOwner(records, window(10, 30), ms(40));
  assert.deepEqual(
    usage.map((u) => ({ ...u, byGpu: Object.fromEntries(u.byGpu) })),
    [
      { owner: 'a', gpuSeconds: (5 * 2 + 3 + 5) * 60, jobs: 2, attempts: 3, byGpu: { G0: 300, G1: 480, G2: 300 } },
      { owner: 'b', gpuSeconds: 2 * 60, jobs: 1, attempts: 1, byGpu: { G2: 120 } },
    ],
  );
});

test('a running job counts up to now when now is inside the window, not to its end', () => {
  const r = job('a', { gpus: ['G0'], startedAt: at(0) });
  assert.equal(gpuSecondsByOwner([r], window(0, 60), ms(10))[0]!.gpuSeconds, 600);
});

test('model weights: the first entry whose model is part of the card name, case-insensitively; otherwise 1', () => {
  const weights = [
    { model: 'H200', weight: 2 },
    { model: 'a100', weight: 1.5 },
    { model: 'NVIDIA', weight: 0.5 },
  ];
  assert.equal(modelWeight('NVIDIA H200', weights), 2);
  assert.equal(modelWeight('NVIDIA A100-SXM4-80GB', weights), 1.5);
  assert.equal(modelWeight('NVIDIA L4', weights), 0.5);
  assert.equal(modelWeight('static', weights), 1);
  assert.equal(modelWeight('NVIDIA H200', []), 1);
});

test('the window: defaults to the 30 days before now, or before `to`', () => {
  const now = ms(0);
  assert.deepEqual(usageWindow({}, now), { from: new Date(now - 30 * 86_400_000).toISOString(), to: at(0) });
  assert.deepEqual(usageWindow({ to: '2026-03-31T00:00:00+02:00' }, now), {
    from: '2026-02-28T22:00:00.000Z',
    to: '2026-03-30T22:00:00.000Z',
  });
});

test('CSV: a header row, one row per owner, CRLF lines, owners with commas, quotes or line breaks quoted', () => {
  const row = (owner: string) => ({ owner, gpuSeconds: 7200, gpuHours: 2, weightedGpuHours: 4, jobs: 1, attempts: 2, byModel: [] });
  const csv = usageCsv({ from: at(0), to: at(60), items: [row('plain'), row('team, "vision"'), row('two\nlines')] });
  assert.equal(
    csv,
    'owner,from,to,gpu_seconds,gpu_hours,weighted_gpu_hours,jobs,attempts\r\n' +
      `plain,${at(0)},${at(60)},7200,2,4,1,2\r\n` +
      `"team, ""vision""",${at(0)},${at(60)},7200,2,4,1,2\r\n` +
      `"two\nlines",${at(0)},${at(60)},7200,2,4,1,2\r\n`,
  );
});
