// The operator page's rings (gpu/telemetry/history.ts,
// scheduling/queue-history.ts): bounded whatever runs, spaced as they
// promise, and a job's series spanning its whole life.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CARD_POINTS, JOB_POINTS, JOBS_KEPT, Ring, TelemetryHistory } from '../../src/gpu/telemetry/history.js';
import type { CardSample } from '../../src/gpu/telemetry/nvidia-smi.js';
import type { CardHolder } from '../../src/model/history.js';
import { QUEUE_POINTS, QueueHistory } from '../../src/scheduling/queue-history.js';
import type { JobRecord } from '../../src/store/store.js';

const at = (ms: number) => ({ at: ms });
const times = (points: readonly { at: number }[]) => points.map((p) => p.at);

test('a rolling ring keeps at most one point per spacing and, when full, drops the oldest', () => {
  const ring = new Ring(3, 10, 'rolling');
  for (const ms of [0, 5, 10, 20, 25, 30]) ring.push(at(ms));
  assert.deepEqual(times(ring.since(0)), [10, 20, 30]);
  assert.deepEqual(times(ring.since(15)), [20, 30]);
  assert.deepEqual(times(ring.since(31)), []);
});

test('a thinning ring spans the whole life of what it follows in at most its capacity, its spacing doubling', () => {
  const ring = new Ring(4, 1, 'thinning');
  for (let ms = 0; ms <= 1000; ms++) {
    ring.push(at(ms));
    assert.ok(ring.since(0).length <= 4);
  }
  const kept = times(ring.since(0));
  assert.equal(kept[0], 0, 'the first point stays');
  assert.ok(kept.at(-1)! >= 1000 - 256, `the last point is recent: ${kept}`);
  assert.deepEqual(
    kept.slice(1).map((t, i) => t - kept[i]!),
    Array(kept.length - 1).fill(kept[1]),
    'evenly spaced',
  );
});

const card = (uuid: string, utilizationPct: number | null): CardSample => ({ uuid, utilizationPct, memoryUsedMiB: 1000, powerWatts: 100 });

test('a card keeps one point per two samples, CARD_POINTS at most, with the jobs that held it', () => {
  const history = new TelemetryHistory(500);
  assert.equal(history.cardSpacingMs, 1000);
  const holder: CardHolder = { jobId: 'j1', owner: 'airflow' };
  for (let tick = 0; tick < CARD_POINTS * 2 + 10; tick++)
    history.recordCards(tick * 500, [card('GPU-a', tick % 100)], new Map([['GPU-a', [{ ...holder }]]]));
  const points = history.card('GPU-a', 0);
  assert.equal(points.length, CARD_POINTS);
  assert.ok(points.every((p, i) => i === 0 || p.at - points[i - 1]!.at === 1000));
  assert.ok(points.every((p) => p.holders.length === 1 && p.holders[0]!.jobId === 'j1'));
  assert.deepEqual(history.card('GPU-unknown', 0), []);
});

test("a job's sample averages its cards' utilisation and sums memory and power; an unknown figure stays unknown", () => {
  const history = new TelemetryHistory(1000);
  history.recordJob('j', 1, 0, [
    { utilizationPct: 90, memoryUsedMiB: 1000, powerWatts: 300 },
    { utilizationPct: 45, memoryUsedMiB: 500, powerWatts: 200 },
  ]);
  history.recordJob('j', 1, 1000, [
    { utilizationPct: null, memoryUsedMiB: 1000, powerWatts: null },
    { utilizationPct: 45, memoryUsedMiB: 500, powerWatts: 200 },
  ]);
  assert.deepEqual(history.job('j'), [
    { at: 0, attempt: 1, utilizationPct: 67.5, memoryUsedMiB: 1500, powerWatts: 500 },
    { at: 1000, attempt: 1, utilizationPct: null, memoryUsedMiB: 1500, powerWatts: null },
  ]);
});

test('at most JOBS_KEPT jobs keep a series: the one sampled least recently goes first', () => {
  const history = new TelemetryHistory(1000);
  const sample = [{ utilizationPct: 50, memoryUsedMiB: 10, powerWatts: 10 }];
  for (let j = 0; j < JOBS_KEPT; j++) history.recordJob(`job-${j}`, 1, 0, sample);
  history.recordJob('job-0', 1, 1000, sample); // sampled again: now the most recent
  history.recordJob('newcomer', 1, 1000, sample);
  assert.equal(history.job('job-0').length, 2);
  assert.deepEqual(history.job('job-1'), [], 'the least recently sampled is forgotten');
  assert.equal(history.job('newcomer').length, 1);
  for (let tick = 0; tick < JOB_POINTS * 3; tick++) history.recordJob('long', 1, tick * 1000, sample);
  const long = history.job('long');
  assert.ok(long.length <= JOB_POINTS);
  assert.equal(long[0]!.at, 0, "a long job's series still starts at its start");
});

test('the queue ring counts the queued jobs, those for GPUs, and their waits; QUEUE_POINTS at most', () => {
  let queued: JobRecord[] = [];
  const record = (createdAt: number, gpus: boolean) =>
    ({ createdAt: new Date(createdAt).toISOString(), spec: gpus ? { gpus: { count: 1 } } : {} }) as unknown as JobRecord;
  const history = new QueueHistory(() => queued);
  history.sample(60_000);
  queued = [record(0, true), record(60_000, false)];
  history.sample(120_000);
  assert.deepEqual(
    history.since(0).map(({ time, ...rest }) => rest),
    [
      { queued: 0, gpuQueued: 0, longestWaitSeconds: 0, meanWaitSeconds: 0 },
      { queued: 2, gpuQueued: 1, longestWaitSeconds: 120, meanWaitSeconds: 90 },
    ],
  );
  for (let i = 0; i < QUEUE_POINTS + 5; i++) history.sample(200_000 + i * 30_000);
  assert.equal(history.since(0).length, QUEUE_POINTS);
});
