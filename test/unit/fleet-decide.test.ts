import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobSpec } from '../../src/model/job.js';
import { FairShare } from '../../src/scheduling/fair-share.js';
import { decideFleet, type FleetInput, type FleetNode } from '../../src/scheduling/fleet-decide.js';
import { QueueState } from '../../src/scheduling/queue-state.js';
import { type Quota, Quotas } from '../../src/scheduling/quotas.js';
import type { Assignment, FleetPreemption, JobRecord, NodeReport, ReportedRun } from '../../src/store/store.js';
import { jobRecord } from '../helpers/records.js';

// The fleet's pass as a pure function of its snapshot: each job given to
// one node, the teams' limits counted across the fleet, one preemption per
// waiting job, and the assignments of an earlier term taken back.

const NOW = 1_000_000;
const gpuSpec = (count: number, extra: Partial<JobSpec> = {}) =>
  ({ image: 'local/busybox', command: ['true'], gpus: { count }, ...extra }) as JobSpec;
const cpu = (seq: number, over: Partial<JobRecord> = {}) => jobRecord(seq, over);
const gpu = (seq: number, over: Partial<JobRecord> = {}) => jobRecord(seq, { spec: gpuSpec(1), ...over });

function node(
  name: string,
  o: { gpus?: number; runs?: ReportedRun[]; holdings?: NodeReport['holdings']; maxRunning?: number } = {},
): FleetNode {
  return {
    name,
    labels: {},
    devices: Array.from({ length: o.gpus ?? 0 }, (_, i) => ({
      index: i,
      uuid: `GPU-${name}-${i}`,
      name: 'NVIDIA H200',
      memoryMiB: 143771,
    })),
    report: {
      node: name,
      epoch: 1,
      idle: null,
      maxRunning: o.maxRunning ?? 10,
      runs: o.runs ?? [],
      holdings: o.holdings ?? [],
      withheld: [],
    },
  };
}

function input(o: {
  nodes: FleetNode[];
  queued: JobRecord[];
  active?: JobRecord[];
  teams?: Quota[];
  assignments?: Assignment[];
  preemptions?: FleetPreemption[];
  term?: number;
}): FleetInput {
  const quotas = new Quotas(o.teams ?? []);
  const queue = new QueueState(new FairShare(0, quotas));
  queue.reset(o.queued, o.active ?? []);
  return {
    nodes: o.nodes,
    queue,
    assignments: o.assignments ?? [],
    preemptions: o.preemptions ?? [],
    quotas,
    term: o.term ?? 1,
    now: NOW,
  };
}

test('each queued job is given to one node, on GPUs that node has free', () => {
  const d = decideFleet(input({ nodes: [node('a', { gpus: 1 }), node('b', { gpus: 1 })], queued: [gpu(1), gpu(2), gpu(3)] }));
  assert.deepEqual(
    d.assign.map((a) => [a.jobId, a.node, a.gpus?.uuids]),
    [
      ['j1', 'a', ['GPU-a-0']],
      ['j2', 'b', ['GPU-b-0']],
    ],
  );
  assert.ok(d.outcome.decided.get('j3'), 'the third waits, with a reason');
});

test("a team's maxRunning counts what runs, what is assigned and what this pass gives out, on every node", () => {
  const teams = [{ name: 'ml', owners: ['o'], maxRunning: 3 }];
  const running: ReportedRun = {
    jobId: 'j1',
    attempt: 1,
    owner: 'o',
    priority: 0,
    preemptible: false,
    startedAt: 1,
    endsBy: null,
    gpus: 0,
    preempted: false,
  };
  const d = decideFleet(
    input({
      nodes: [node('a', { runs: [running] }), node('b'), node('c')],
      active: [cpu(1, { state: 'running', node: 'a' })],
      queued: [cpu(2), cpu(3), cpu(4), cpu(5)],
      assignments: [{ jobId: 'j2', node: 'b', gpus: null, term: 1 }],
      teams,
    }),
  );
  assert.deepEqual(
    d.assign.map((a) => a.jobId),
    ['j3'],
    'one running, one assigned, one given now: three, the limit',
  );
});

test('a waiting job gets one preemption in the fleet, and none while one is under way', () => {
  const low = (jobId: string): ReportedRun => ({
    jobId,
    attempt: 1,
    owner: 'o',
    priority: 0,
    preemptible: true,
    startedAt: 1,
    endsBy: null,
    gpus: 1,
    preempted: false,
  });
  const nodes = [
    node('a', { gpus: 1, runs: [low('j1')], holdings: [{ jobId: 'j1', uuids: ['GPU-a-0'], memoryMiB: null }] }),
    node('b', { gpus: 1, runs: [low('j2')], holdings: [{ jobId: 'j2', uuids: ['GPU-b-0'], memoryMiB: null }] }),
  ];
  const active = [gpu(1, { state: 'running', node: 'a', priority: 0 }), gpu(2, { state: 'running', node: 'b', priority: 0 })];
  const queued = [gpu(3, { priority: 10 })];
  const first = decideFleet(input({ nodes, active, queued }));
  assert.equal(first.preempt.length, 1, 'one node makes room, not both');
  assert.equal(first.preempt[0]!.waiter, 'j3');
  const again = decideFleet(input({ nodes, active, queued, preemptions: [{ ...first.preempt[0]!, term: 1 }] }));
  assert.deepEqual(again.preempt, [], 'while its victims stop, nothing more is preempted for it');
  assert.deepEqual(again.settled, []);
});

test('assignments of an earlier term, or to a node no longer up, are taken back and the job given out again', () => {
  const queued = [cpu(1), cpu(2)];
  const teams = [{ name: 'ml', owners: ['o'], maxRunning: 1 }];
  const stale: Assignment = { jobId: 'j1', node: 'a', gpus: null, term: 1 };
  const first = decideFleet(input({ nodes: [node('a')], queued, assignments: [stale], teams, term: 2 }));
  assert.deepEqual(first.revoke, ['j1']);
  assert.deepEqual(first.assign, [], 'its node may have claimed it before the takeover: it still counts against the limit for this pass');
  const next = decideFleet(input({ nodes: [node('a')], queued, teams, term: 2 }));
  assert.deepEqual(
    next.assign.map((a) => [a.jobId, a.node]),
    [['j1', 'a']],
    'given out again under the new term',
  );
  const gone = decideFleet(
    input({ nodes: [node('a')], queued, assignments: [{ jobId: 'j1', node: 'gone', gpus: null, term: 2 }], term: 2 }),
  );
  assert.deepEqual(gone.revoke, ['j1']);
  assert.deepEqual(
    gone.assign.map((a) => [a.jobId, a.node]),
    [
      ['j1', 'a'],
      ['j2', 'a'],
    ],
    'a node no longer up holds nothing: its job is given out at once',
  );
});
