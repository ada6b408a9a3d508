import assert from 'node:assert/strict';
import { test } from 'node:test';
import { brakes } from '../../src/fleet/membership.js';
import { settleLostJob } from '../../src/fleet/node-loss.js';
import type { JobSpec } from '../../src/model/job.js';
import type { JobRecord, NodeRecord } from '../../src/store/store.js';
import { jobRecord } from '../helpers/records.js';

const lost: NodeRecord = {
  name: 'c',
  labels: {},
  gpus: [],
  version: 'test',
  leaseSeconds: 30,
  epoch: 4,
  state: 'lost',
  drained: false,
  startedAt: '2026-12-02T08:00:00.000Z',
  heartbeatAt: '2026-12-02T08:10:00.000Z',
  heartbeatAgeSeconds: 31,
};

function job(spec: Partial<JobSpec>, over: Partial<JobRecord> = {}): JobRecord {
  return jobRecord(1, {
    id: 'j',
    state: 'running',
    spec: { image: 'local/busybox:latest', command: ['true'], ...spec },
    containerId: 'abc',
    gpus: ['GPU-1'],
    node: 'c',
    createdAt: '2026-12-02T08:00:00.000Z',
    startedAt: '2026-12-02T08:00:01.000Z',
    ...over,
  });
}

const now = new Date('2026-12-02T08:11:00.000Z');

test('a job of a lost node fails, naming the node, and releases its GPUs', () => {
  const p = settleLostJob(job({}), lost, now);
  assert.equal(p.state, 'failed');
  assert.equal(p.finishedAt, now.toISOString());
  assert.deepEqual(p.gpus, []);
  assert.equal(p.reason, 'node "c" was lost while the job was running: it renewed no lease for 30 s');
});

test('a job that asks for node_lost retries goes back to the queue as its next attempt, until none is left', () => {
  const retry = { maxAttempts: 2, on: ['node_lost' as const] };
  const p = settleLostJob(job({ retry }), lost, now);
  assert.equal(p.state, 'queued');
  assert.equal(p.attempt, 2);
  assert.equal(p.node, null);
  assert.equal(p.containerId, null);
  assert.deepEqual(p.gpus, []);
  assert.equal(p.startedAt, null);
  assert.match(p.reason!, /^attempt 1: node "c" was lost.*queued again as attempt 2 \(infrastructure attempts: 1 of 2 used\)$/);
  assert.deepEqual(p.endAttempt && { outcome: p.endAttempt.outcome, cause: p.endAttempt.cause, retried: p.endAttempt.retried }, {
    outcome: 'failed',
    cause: 'node_lost',
    retried: true,
  });
  const last = settleLostJob(job({ retry }, { attempt: 2 }), lost, now);
  assert.equal(last.state, 'failed');
  assert.match(last.reason!, /infrastructure attempts: 2 of 2 used, none left/);
  assert.deepEqual(last.gpus, []);
});

test('a cancel asked before the node was lost ends the job cancelled, retry or not', () => {
  const p = settleLostJob(job({ retry: { maxAttempts: 3, on: ['node_lost'] } }, { cancelRequested: true }), lost, now);
  assert.equal(p.state, 'cancelled');
  assert.match(p.reason!, /node "c" was lost/);
});

test('the brake holds only when more than half of the other live nodes look lost at once, and never for one node alone', () => {
  const cases: [due: number, othersUp: number, holds: boolean][] = [
    [1, 1, false],
    [1, 2, false],
    [1, 9, false],
    [2, 2, true],
    [2, 3, true],
    [2, 4, false],
    [3, 5, true],
    [3, 6, false],
    [5, 9, true],
    [4, 9, false],
  ];
  for (const [due, othersUp, holds] of cases) assert.equal(brakes(due, othersUp), holds, `${due} of ${othersUp} others due`);
});
