/**
 * The JobStore contract (src/store/store.ts), one suite run against both
 * stores: a real SQLite file and a real, throwaway PostgreSQL (a fresh
 * database per test). Every JobStore method; what is particular to one
 * store (claims across processes, the change feed, the record caches, NUL
 * in PostgreSQL text) stays in sqlite-store.test.ts and postgres-store.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { usageToKeep } from '../../src/jobs/usage-report.js';
import { FencedError } from '../../src/model/errors.js';
import type { GpuTelemetry } from '../../src/model/gpu-telemetry.js';
import type { JobSpec } from '../../src/model/job.js';
import { EMPTY_LOG_STATE } from '../../src/model/log.js';
import type { RunSettings } from '../../src/model/run-settings.js';
import { gpuSecondsByOwner } from '../../src/scheduling/usage.js';
import { newJobRecord, type Store } from '../../src/store/store.js';
import { newJob, nodeInfo, RUN_SETTINGS } from '../helpers/records.js';
import { type OpenStore, onBothStores } from '../helpers/stores.js';

const TELEMETRY: GpuTelemetry = {
  attempt: 1,
  samples: 2,
  firstSampleAt: '2030-01-01T00:00:10.000Z',
  lastSampleAt: '2030-01-01T00:00:20.000Z',
  gpuSeconds: 20,
  sharedCard: true,
  meanUtilizationPct: null,
  peakUtilizationPct: 100,
  peakMemoryMiB: 5000,
  energyJoules: null,
  declaredMemoryMiB: 4096,
  overDeclaredMemory: true,
  warnings: [{ kind: 'memory_exceeded', time: '2030-01-01T00:00:20.000Z', message: 'over', action: 'warn' }],
};

function contract(open: OpenStore): void {
  test('insert: the record of a new job, frozen; the same owner and key give back the first job', async (t) => {
    const { store } = await open(t);
    const job = newJob({ idempotencyKey: 'k1', requestId: 'r1', spec: { name: 'train', priority: 5, labels: { team: 'ml' } } });
    const first = await store.jobs.insert(job);
    assert.equal(first.created, true);
    const r = first.record;
    assert.equal(typeof r.seq, 'number');
    assert.deepEqual(r, newJobRecord(job, r.seq), 'every field as newJobRecord states it');
    assert.deepEqual(await store.jobs.get(r.id), r);

    const again = await store.jobs.insert(newJob({ idempotencyKey: 'k1', spec: { command: ['false'] }, specHash: 'other' }));
    assert.equal(again.created, false);
    assert.equal(again.record.id, r.id);
    assert.equal(again.record.specHash, 'hash', 'the first job, as it was stored');
    const otherOwner = await store.jobs.insert(newJob({ owner: 'bob', idempotencyKey: 'k1' }));
    assert.equal(otherOwner.created, true, 'keys are per owner');
    const noKey = await store.jobs.insert(newJob());
    assert.equal(noKey.created, true);
    assert.ok(noKey.record.seq > otherOwner.record.seq, 'seq grows with each insert');
    assert.equal(await store.jobs.get('nope'), undefined);
    assert.deepEqual(
      (await store.jobs.list({ label: { key: 'team', value: 'ml' }, limit: 10 })).map((j) => j.id),
      [r.id],
    );
  });

  test('records are frozen, their lists and settings too, and a write gives a new record', async (t) => {
    const { store } = await open(t);
    const { record } = await store.jobs.insert(newJob());
    const running = await store.jobs.update(record.id, { state: 'running', node: 'a', gpus: ['GPU-1'] });
    const finishedAt = '2030-01-01T00:00:00.000Z';
    const endAttempt = { outcome: 'failed', cause: 'exit_code', retried: true, reason: 'x', exitCode: 1, finishedAt } as const;
    const requeued = await store.jobs.update(record.id, { state: 'queued', node: null, attempt: 2, gpus: [], endAttempt });
    for (const r of [record, running!, requeued!, (await store.jobs.list({ limit: 1 }))[0]!]) {
      assert.ok(Object.isFrozen(r), 'the record');
      assert.ok(Object.isFrozen(r.gpus), 'its GPUs');
      assert.ok(Object.isFrozen(r.attempts), 'its attempts');
      assert.ok(Object.isFrozen(r.settings), 'its settings');
    }
    assert.equal(requeued?.attempts.length, 1);
    assert.notEqual(running, record);
    assert.equal(record.state, 'queued', 'a record handed out never changes');
    assert.deepEqual(running?.gpus, ['GPU-1']);
  });

  test('run settings round-trip, and fillSettings gives them only to unended jobs that have none', async (t) => {
    const { store, another, raw } = await open(t);
    const own: RunSettings = { timeoutSeconds: 7, memoryMiB: 64, user: '1000:1000', pullPolicy: 'never', stopGraceSeconds: 0 };
    const { record } = await store.jobs.insert(newJob({ settings: own }));
    assert.deepEqual(record.settings, own);
    const running = await store.jobs.update(record.id, { state: 'running', node: 'a' });
    assert.deepEqual(running?.settings, own, 'a write keeps them');
    assert.deepEqual((await (await another()).jobs.get(record.id))?.settings, own, 'as read from the database');

    // Jobs as a Gantry before run settings left them.
    const queued = (await store.jobs.insert(newJob({ spec: { timeoutSeconds: 30 } }))).record;
    const ended = (await store.jobs.insert(newJob())).record;
    await store.jobs.update(ended.id, { state: 'succeeded', finishedAt: '2030-01-01T00:00:00.000Z' });
    await raw(`UPDATE jobs SET settings = NULL WHERE id IN ('${queued.id}', '${ended.id}')`);
    const fresh = await another();
    assert.equal((await fresh.jobs.get(queued.id))?.settings, null);
    const seen: JobSpec[] = [];
    const filled = await fresh.jobs.fillSettings((spec) => {
      seen.push(spec);
      return { ...RUN_SETTINGS, timeoutSeconds: spec.timeoutSeconds ?? 1 };
    });
    assert.equal(filled, 1);
    assert.deepEqual(
      seen.map((s) => s.timeoutSeconds),
      [30],
      'resolved from the job’s own spec',
    );
    assert.deepEqual((await fresh.jobs.get(queued.id))?.settings, { ...RUN_SETTINGS, timeoutSeconds: 30 });
    assert.equal((await fresh.jobs.get(ended.id))?.settings, null, 'an ended job is left as it was');
    assert.deepEqual((await fresh.jobs.get(record.id))?.settings, own, 'a job with settings keeps them');
    assert.equal(await fresh.jobs.fillSettings(() => assert.fail('nothing is left to fill')), 0);
  });

  test('update: a compare-and-set on the state, and a fence on node, attempt and not ended', async (t) => {
    const { store } = await open(t);
    const { record } = await store.jobs.insert(newJob());
    const pulled = await store.jobs.update(
      record.id,
      { state: 'pulling', node: 'a', gpus: ['GPU-1'], gpuMemoryMiB: 1024 },
      { state: 'queued' },
    );
    assert.equal(pulled?.state, 'pulling');
    assert.equal(pulled?.node, 'a');
    assert.deepEqual(pulled?.gpus, ['GPU-1']);
    assert.equal(pulled?.gpuMemoryMiB, 1024);
    assert.equal(await store.jobs.update(record.id, { state: 'starting' }, { state: 'queued' }), undefined, 'state no longer queued');
    assert.equal((await store.jobs.get(record.id))?.state, 'pulling', 'the refused write changed nothing');

    const fence = { node: 'a', attempt: 1, epoch: 1 };
    const running = await store.jobs.update(record.id, { state: 'running', containerId: 'c1' }, { state: 'pulling', fence });
    assert.equal(running?.state, 'running');
    assert.equal(running?.containerId, 'c1');
    assert.equal(
      await store.jobs.update(record.id, { pullStatus: 'x' }, { fence: { node: 'b', attempt: 1, epoch: 1 } }),
      undefined,
      'another node',
    );
    assert.equal(
      await store.jobs.update(record.id, { pullStatus: 'x' }, { fence: { node: 'a', attempt: 2, epoch: 1 } }),
      undefined,
      'another attempt',
    );
    assert.equal(await store.jobs.update(record.id, { pullStatus: 'x' }, { state: 'starting', fence }), undefined, 'state guard too');
    assert.equal(
      await store.jobs.update(record.id, {}, { fence: { node: 'a', attempt: 2, epoch: 1 } }),
      undefined,
      'an empty patch keeps the guard',
    );
    assert.equal((await store.jobs.update(record.id, {}, { fence }))?.state, 'running');
    const cancel = await store.jobs.update(record.id, { cancelRequested: true, result: 'progress' }, { fence });
    assert.equal(cancel?.cancelRequested, true);
    assert.equal(cancel?.result, 'progress');

    // A job whose cancel was asked is never put back in the queue: the store refuses the write.
    const requeue = { state: 'queued', node: null, attempt: 2 } as const;
    assert.equal(await store.jobs.update(record.id, requeue, { state: 'running' }), undefined, 'a cancel was asked');
    assert.equal(await store.jobs.update(record.id, requeue), undefined, 'without a guard too');
    assert.equal((await store.jobs.get(record.id))?.state, 'running');
    await store.jobs.update(record.id, { cancelRequested: false });

    // A new attempt, queued again: the old attempt's writes are refused.
    const requeued = await store.jobs.update(record.id, requeue, { state: 'running' });
    assert.equal(requeued?.attempt, 2);
    assert.equal(await store.jobs.update(record.id, { state: 'failed' }, { fence }), undefined);
    assert.equal((await store.jobs.get(record.id))?.state, 'queued');

    const fence2 = { node: 'b', attempt: 2, epoch: 1 };
    await store.jobs.update(record.id, { node: 'b', state: 'running' });
    const ended = await store.jobs.update(
      record.id,
      { state: 'succeeded', exitCode: 0, finishedAt: '2030-01-01T00:00:00.000Z' },
      { fence: fence2 },
    );
    assert.equal(ended?.state, 'succeeded');
    assert.equal(ended?.exitCode, 0);
    assert.equal(
      await store.jobs.update(record.id, { reason: 'late' }, { fence: fence2 }),
      undefined,
      'an ended job refuses fenced writes',
    );
    assert.equal((await store.jobs.get(record.id))?.reason, null);
    assert.equal((await store.jobs.update(record.id, { reason: 'unguarded' }))?.reason, 'unguarded');
    assert.equal(await store.jobs.update('nope', { reason: 'x' }), undefined);
    assert.deepEqual(Object.keys(ended!).sort(), Object.keys(record).sort(), 'a record has exactly the JobRecord fields');
  });

  test('the GPU telemetry summary is stored with the run’s fence, kept by the ended attempt, and refused once the job ended', async (t) => {
    const { store, another } = await open(t);
    const { record } = await store.jobs.insert(newJob());
    assert.equal(record.gpuTelemetry, null, 'a new job has none');
    const fence = { node: 'a', attempt: 1, epoch: 1 };
    await store.jobs.update(record.id, { state: 'running', node: 'a', gpus: ['GPU-1'], startedAt: '2030-01-01T00:00:00.000Z' });
    assert.deepEqual((await store.jobs.update(record.id, { gpuTelemetry: TELEMETRY }, { fence }))?.gpuTelemetry, TELEMETRY);
    const finishedAt = '2030-01-01T00:01:00.000Z';
    const endAttempt = { outcome: 'succeeded', cause: null, retried: false, reason: null, exitCode: 0, finishedAt } as const;
    const ended = await store.jobs.update(record.id, { state: 'succeeded', finishedAt, endAttempt }, { fence });
    assert.deepEqual(ended?.attempts, [
      {
        attempt: 1,
        node: 'a',
        gpus: ['GPU-1'],
        startedAt: '2030-01-01T00:00:00.000Z',
        outcome: 'succeeded',
        cause: null,
        retried: false,
        reason: null,
        exitCode: 0,
        finishedAt,
        gpuTelemetry: TELEMETRY,
        logEnd: 0,
      },
    ]);
    assert.equal(await store.jobs.update(record.id, { gpuTelemetry: { ...TELEMETRY, samples: 3 } }, { fence }), undefined);
    assert.deepEqual((await (await another()).jobs.get(record.id))?.gpuTelemetry, TELEMETRY, 'as read from the database');
  });

  test('claim: of two claims one wins; a drained, lost or unknown node, or an older epoch, cannot claim', async (t) => {
    const { store } = await open(t);
    const a = await store.nodes.register(nodeInfo('a'));
    const b = await store.nodes.register(nodeInfo('b'));
    const job = (await store.jobs.insert(newJob())).record;
    const [ca, cb] = await Promise.all([store.jobs.claim(job.id, a), store.jobs.claim(job.id, b)]);
    assert.equal([ca, cb].filter((r) => r !== undefined).length, 1, 'exactly one winner');
    const winner = (ca ?? cb)!;
    assert.equal(winner.state, 'queued');
    assert.equal((await store.jobs.get(job.id))?.node, winner.node);
    const loser = winner.node === 'a' ? b : a;
    assert.equal(await store.jobs.claim(job.id, loser), undefined, 'a job another node claimed cannot be claimed');
    const winnerSeat = winner.node === 'a' ? a : b;
    assert.equal(
      (await store.jobs.claim(job.id, winnerSeat))?.node,
      winner.node,
      'its node claims it again (a claim repeated after a lost reply)',
    );

    const second = (await store.jobs.insert(newJob())).record;
    await store.nodes.setDrained('b', true);
    assert.equal(await store.jobs.claim(second.id, b), undefined, 'drained');
    await store.nodes.setDrained('b', false);
    assert.equal(await store.jobs.claim(second.id, { name: 'b', epoch: b.epoch + 1 }), undefined, 'an epoch not yet registered');
    assert.equal(await store.jobs.claim(second.id, { name: 'ghost', epoch: 1 }), undefined, 'unknown node');
    const b2 = await store.nodes.register(nodeInfo('b'));
    assert.equal(await store.jobs.claim(second.id, b), undefined, 'the epoch before the last registration');
    const lost = await store.nodes.register(nodeInfo('l', 1));
    await sleep(1_200);
    await store.nodes.expire(() => ({}));
    assert.equal((await store.nodes.get('l'))?.state, 'lost');
    assert.equal(await store.jobs.claim(second.id, lost), undefined, 'lost node');
    assert.equal((await store.jobs.claim(second.id, b2))?.node, 'b', 'the current epoch, up and undrained, claims');

    const ended = (await store.jobs.insert(newJob())).record;
    await store.jobs.update(ended.id, { state: 'failed' });
    assert.equal(await store.jobs.claim(ended.id, b2), undefined, 'only a queued job');
  });

  test('the fence holds the epoch: once a newer process of the node holds the run, the older one can write nothing about it', async (t) => {
    const { store } = await open(t);
    const old = await store.nodes.register(nodeInfo('a'));
    const job = (await store.jobs.insert(newJob())).record;
    const claimed = await store.jobs.claim(job.id, old);
    assert.equal(claimed?.nodeEpoch, old.epoch, 'the claim stamps the claiming process');
    const oldFence = { node: 'a', attempt: 1, epoch: old.epoch };
    const line = (text: string) => [{ stream: 'stdout' as const, time: Date.now(), line: text }];
    const logState = (nextSeq: number) => ({ ...EMPTY_LOG_STATE, nextSeq, stdoutRecords: nextSeq - 1 });
    assert.equal((await store.jobs.update(job.id, { state: 'running' }, { state: 'queued', fence: oldFence }))?.state, 'running');
    await store.logs.append(job.id, line('one'), logState(2), oldFence);

    // The node restarts while the old process is paused: the new one registers and adopts the run.
    const now = await store.nodes.register(nodeInfo('a'));
    const newFence = { ...oldFence, epoch: now.epoch };
    const adopted = await store.jobs.update(job.id, { nodeEpoch: now.epoch }, { fence: newFence });
    assert.equal(adopted?.nodeEpoch, now.epoch, 'a newer process may write over an older one');
    assert.equal(await store.jobs.update(job.id, { result: 'stale' }, { fence: oldFence }), undefined, 'the older process is refused');
    assert.equal(await store.jobs.update(job.id, { state: 'failed' }, { state: 'running', fence: oldFence }), undefined);
    await assert.rejects(store.logs.append(job.id, line('stale'), logState(3), oldFence), FencedError);
    await assert.rejects(store.logs.saveState(job.id, { ...logState(2), complete: true }, oldFence), FencedError);
    assert.equal((await store.jobs.get(job.id))?.state, 'running');
    assert.equal((await store.logs.state(job.id)).nextSeq, 2, 'nothing of the older process was stored');

    await store.logs.append(job.id, line('two'), logState(3), newFence);
    assert.equal((await store.jobs.update(job.id, { state: 'succeeded' }, { state: 'running', fence: newFence }))?.state, 'succeeded');
  });

  test('queries: scheduling order, queue summary, active, claimed, holding GPUs, list, counts, retention', async (t) => {
    const { store } = await open(t);
    const n = await store.nodes.register(nodeInfo('a'));
    const low = (await store.jobs.insert(newJob({ createdAt: '2030-01-01T00:00:01.000Z' }))).record;
    const high1 = (await store.jobs.insert(newJob({ spec: { priority: 10 }, createdAt: '2030-01-01T00:00:02.000Z' }))).record;
    const high2 = (await store.jobs.insert(newJob({ spec: { priority: 10 }, owner: 'bob', createdAt: '2030-01-01T00:00:03.000Z' }))).record;
    const neg = (await store.jobs.insert(newJob({ spec: { priority: -1 }, createdAt: '2030-01-01T00:00:00.000Z' }))).record;
    assert.deepEqual(
      (await store.jobs.queued()).map((j) => j.id),
      [high1.id, high2.id, low.id, neg.id],
      'higher priority first, then FIFO',
    );
    assert.deepEqual(await store.jobs.queueSummary(), { length: 4, oldestCreatedAt: '2030-01-01T00:00:00.000Z' });

    await store.jobs.claim(high1.id, n);
    await store.jobs.update(high1.id, { state: 'running', gpus: ['GPU-a-0'] });
    await store.jobs.claim(high2.id, n);
    await store.jobs.update(high2.id, { state: 'pulling' });
    await store.jobs.claim(low.id, n);
    const other = (await store.jobs.insert(newJob({ createdAt: '2030-01-01T00:00:04.000Z' }))).record;
    await store.jobs.update(other.id, { state: 'running', node: 'b', gpus: ['GPU-b-0'] });
    await store.jobs.update(neg.id, { state: 'failed', finishedAt: '2030-01-02T00:00:00.000Z' });

    assert.deepEqual(
      (await store.jobs.active('a')).map((j) => j.id),
      [high1.id, high2.id],
    );
    assert.deepEqual(await store.jobs.active('c'), []);
    const owned = await store.jobs.owned('a');
    assert.deepEqual(
      { claimed: owned.claimed.map((j) => j.id), active: owned.active.map((j) => j.id) },
      { claimed: [low.id], active: [high1.id, high2.id] },
      'claimed is not active yet; both in one read, active as `active` gives them',
    );
    const b = await store.jobs.owned('b');
    assert.deepEqual({ claimed: b.claimed, active: b.active.map((j) => j.id) }, { claimed: [], active: [other.id] });
    assert.deepEqual(
      (await store.jobs.holdingGpus()).map((j) => j.id),
      [high1.id, other.id],
    );
    assert.deepEqual(await store.jobs.queued(), []);
    assert.deepEqual(await store.jobs.queueSummary(), { length: 0, oldestCreatedAt: null }, 'a claimed job no longer waits in the queue');

    assert.deepEqual(
      (await store.jobs.list({ limit: 10 })).map((j) => j.id),
      [other.id, neg.id, high2.id, high1.id, low.id],
    );
    assert.deepEqual(
      (await store.jobs.list({ owner: 'bob', limit: 10 })).map((j) => j.id),
      [high2.id],
    );
    assert.deepEqual(
      (await store.jobs.list({ states: ['running', 'failed'], limit: 10 })).map((j) => j.id),
      [other.id, neg.id, high1.id],
    );
    assert.deepEqual(
      (await store.jobs.list({ beforeSeq: high2.seq, limit: 1 })).map((j) => j.id),
      [high1.id],
    );
    assert.deepEqual(
      (await store.jobs.overlapping('2030-01-01T00:00:00.500Z', '2030-01-01T00:00:02.500Z')).map((j) => j.id),
      [low.id, high1.id, neg.id],
      'created before the end, not finished before the start, in insertion order',
    );
    assert.deepEqual(
      (await store.jobs.overlapping('2030-01-02T00:00:00.001Z', '2030-01-01T00:00:02.500Z')).map((j) => j.id),
      [low.id, high1.id],
      'a job finished before the start is left out',
    );
    const counts = (await store.jobs.countByStateAndOwner()).sort((x, y) => `${x.state}${x.owner}`.localeCompare(`${y.state}${y.owner}`));
    assert.deepEqual(counts, [
      { state: 'failed', owner: 'alice', count: 1 },
      { state: 'pulling', owner: 'bob', count: 1 },
      { state: 'queued', owner: 'alice', count: 1 },
      { state: 'running', owner: 'alice', count: 2 },
    ]);

    await store.jobs.update(high1.id, { state: 'succeeded', finishedAt: '2030-01-02T00:00:00.000Z' });
    assert.deepEqual(
      (await store.jobs.holdingGpus()).map((j) => j.id),
      [other.id],
      'an ended job holds no GPU',
    );
  });

  test('holdingGpus: a queued job holds no GPU, even with cards left in its row', async (t) => {
    const { store } = await open(t);
    const n = await store.nodes.register(nodeInfo('a'));
    const stale = (await store.jobs.insert(newJob())).record;
    await store.jobs.claim(stale.id, n);
    // As a row could read after an older Gantry requeued a job without clearing its cards.
    await store.jobs.update(stale.id, { gpus: ['GPU-a-0'] });
    const pulling = (await store.jobs.insert(newJob())).record;
    await store.jobs.update(pulling.id, { state: 'pulling', node: 'a', gpus: ['GPU-a-1'] });
    const starting = (await store.jobs.insert(newJob())).record;
    await store.jobs.update(starting.id, { state: 'starting', node: 'a', gpus: ['GPU-a-2'] });
    const noCards = (await store.jobs.insert(newJob())).record;
    await store.jobs.update(noCards.id, { state: 'running', node: 'a' });
    assert.deepEqual(
      (await store.jobs.holdingGpus()).map((j) => j.id),
      [pulling.id, starting.id],
    );
  });

  test('activeByNode: each node with the jobs it holds pulling, starting or running, in one read', async (t) => {
    const { store } = await open(t);
    const a = await store.nodes.register(nodeInfo('a'));
    await store.nodes.register(nodeInfo('b'));
    const claimed = (await store.jobs.insert(newJob())).record;
    await store.jobs.claim(claimed.id, a);
    for (const [node, state] of [
      ['a', 'pulling'],
      ['a', 'running'],
      ['b', 'starting'],
      ['b', 'succeeded'],
    ] as const) {
      const j = (await store.jobs.insert(newJob())).record;
      await store.jobs.update(j.id, { state, node });
    }
    assert.deepEqual(
      [...(await store.jobs.activeByNode())].sort(),
      [
        ['a', 2],
        ['b', 1],
      ],
      'a claimed job and an ended one are not active',
    );
    for (const name of ['a', 'b']) assert.equal((await store.jobs.active(name)).length, (await store.jobs.activeByNode()).get(name));
  });

  test('nodes.gauges: each node with its cards, the cards its active jobs hold and its active jobs, counted as the rows say', async (t) => {
    const { store } = await open(t);
    const cards = (name: string, n: number) =>
      Array.from({ length: n }, (_, i) => ({ index: i, uuid: `GPU-${name}-${i}`, name: 'NVIDIA H200', memoryMiB: 143_771 }));
    const a = await store.nodes.register({ ...nodeInfo('a'), gpus: cards('a', 4) });
    await store.nodes.register({ ...nodeInfo('b'), gpus: cards('b', 2) });
    await store.nodes.register({ ...nodeInfo('c'), gpus: [] });
    await store.nodes.setDrained('b', true);
    const claimed = (await store.jobs.insert(newJob())).record;
    await store.jobs.claim(claimed.id, a);
    for (const [node, state, gpus] of [
      ['a', 'running', ['GPU-a-0', 'GPU-a-1']],
      // A shared card: two jobs, one card.
      ['a', 'running', ['GPU-a-1']],
      ['a', 'pulling', ['GPU-a-3']],
      ['a', 'starting', []],
      // A card not in the node's inventory counts nowhere.
      ['a', 'running', ['GPU-elsewhere']],
      ['b', 'succeeded', ['GPU-b-0']],
      ['b', 'running', ['GPU-b-1']],
    ] as const) {
      const j = (await store.jobs.insert(newJob())).record;
      await store.jobs.update(j.id, { state, node, gpus: [...gpus] });
    }
    const gauges = await store.nodes.gauges();
    assert.deepEqual(
      gauges.map(({ heartbeatAgeSeconds, ...g }) => g),
      [
        { name: 'a', state: 'up', drained: false, gpus: 4, gpusAllocated: 3, runningJobs: 5 },
        { name: 'b', state: 'up', drained: true, gpus: 2, gpusAllocated: 1, runningJobs: 1 },
        { name: 'c', state: 'up', drained: false, gpus: 0, gpusAllocated: 0, runningJobs: 0 },
      ],
      'a claimed job, an ended one and a card of another inventory are not counted',
    );
    for (const g of gauges) assert.ok(g.heartbeatAgeSeconds >= 0 && g.heartbeatAgeSeconds < 30, `${g.name}: ${g.heartbeatAgeSeconds}`);
    // The same counts as the rows they summarise.
    const holding = await store.jobs.holdingGpus();
    const active = await store.jobs.activeByNode();
    for (const n of await store.nodes.list()) {
      const g = gauges.find((x) => x.name === n.name)!;
      const held = new Set(holding.filter((j) => j.node === n.name).flatMap((j) => j.gpus));
      assert.equal(g.gpusAllocated, n.gpus.filter((c) => held.has(c.uuid)).length, n.name);
      assert.equal(g.runningJobs, active.get(n.name) ?? 0, n.name);
      assert.equal(g.gpus, n.gpus.length, n.name);
    }
  });

  test('counts: kept as jobs change state, are taken and are pruned, equal to counting the rows', async (t) => {
    const { store } = await open(t);
    const n = await store.nodes.register(nodeInfo('a'));
    const ids: string[] = [];
    for (const owner of ['alice', 'alice', 'bob', 'bob', 'bob']) ids.push((await store.jobs.insert(newJob({ owner }))).record.id);
    await store.jobs.claim(ids[0]!, n);
    await store.jobs.update(ids[1]!, { state: 'running', node: 'a' });
    await store.jobs.update(ids[2]!, { state: 'failed', finishedAt: '2030-01-01T00:00:00.000Z' });
    await store.jobs.update(ids[3]!, { state: 'cancelled', finishedAt: '2030-01-01T00:00:00.000Z' });
    await store.jobs.update(ids[3]!, { state: 'cancelled' });
    const sorted = async () =>
      (await store.jobs.countByStateAndOwner()).sort((x, y) => `${x.state}${x.owner}`.localeCompare(`${y.state}${y.owner}`));
    assert.deepEqual(await sorted(), [
      { state: 'cancelled', owner: 'bob', count: 1 },
      { state: 'failed', owner: 'bob', count: 1 },
      { state: 'queued', owner: 'alice', count: 1 },
      { state: 'queued', owner: 'bob', count: 1 },
      { state: 'running', owner: 'alice', count: 1 },
    ]);
    assert.equal((await store.jobs.queueSummary()).length, 1, 'a claimed queued job does not wait');
    await store.retention.compactCounts();
    assert.equal(await store.retention.pruneJobs('2030-01-02T00:00:00.000Z', 10, usageToKeep), 2);
    await store.retention.compactCounts();
    assert.deepEqual(
      await sorted(),
      [
        { state: 'queued', owner: 'alice', count: 1 },
        { state: 'queued', owner: 'bob', count: 1 },
        { state: 'running', owner: 'alice', count: 1 },
      ],
      'a pruned job is no longer counted',
    );
  });

  test('retention cutoff: the given days before now by the store’s clock, in the ISO form stored times have', async (t) => {
    const { store } = await open(t);
    const before = Date.now();
    const cutoff = await store.retention.cutoff(1.5);
    const after = Date.now();
    assert.match(cutoff, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const now = Date.parse(cutoff) + 1.5 * 86_400_000;
    // The server and this process share the host's clock; a second covers the round trip.
    assert.ok(now >= before - 1_000 && now <= after + 1_000, `${cutoff} is 1.5 days before a time within the call`);
  });

  test('log retention: from the mark on, a batch at a time, each job once; jobs finished later or unfinished keep theirs', async (t) => {
    const { store } = await open(t);
    const at = (day: number) => `2030-01-0${day}T00:00:00.000Z`;
    const finished: string[] = [];
    for (const day of [1, 1, 2, 5]) {
      const { record } = await store.jobs.insert(newJob());
      await store.jobs.update(record.id, { state: 'succeeded', finishedAt: at(day) });
      finished.push(record.id);
    }
    const running = (await store.jobs.insert(newJob())).record.id;
    for (const id of [...finished, running]) await logLine(store, id);
    const cutoff = at(3);
    assert.equal(await store.retention.pruneLogs(cutoff, 2), 2, 'two of the three due, the two with one finished_at among them');
    assert.equal(await store.retention.pruneLogs(cutoff, 2), 1);
    assert.equal(await store.retention.pruneLogs(cutoff, 2), 0, 'nothing left past the mark');
    // Logs written again for a job the mark has passed are not looked for again.
    await logLine(store, finished[0]!);
    assert.equal(await store.retention.pruneLogs(cutoff, 2), 0);
    for (const id of finished.slice(1, 3)) assert.deepEqual(await store.logs.tail(id, 10), [], `${id}'s logs are gone`);
    for (const id of [finished[3]!, running]) assert.equal((await store.logs.tail(id, 10)).length, 1, `${id} keeps its logs`);
    assert.equal(await store.retention.pruneLogs(at(6), 10), 1, 'a later cutoff goes on from the mark');
    assert.ok(await store.jobs.get(finished[1]!), 'log retention keeps the job records');
  });

  test('job retention: pruned jobs go with their labels and logs, and the GPU usage of any window stays the same', async (t) => {
    const { store } = await open(t);
    const at = (hour: number) => new Date(Date.UTC(2030, 0, 1, hour)).toISOString();
    const gpuJob = async (owner: string, gpus: string[], start: number, end: number) => {
      const { record } = await store.jobs.insert(newJob({ owner, spec: { labels: { team: 'ml' } } }));
      await store.jobs.update(record.id, { state: 'running', node: 'a', gpus, startedAt: at(start) });
      await store.jobs.update(record.id, { state: 'succeeded', finishedAt: at(end) });
      await logLine(store, record.id);
      return record.id;
    };
    const old = [await gpuJob('alice', ['G0', 'G1'], 1, 3), await gpuJob('bob', ['G2'], 2, 6)];
    const young = await gpuJob('alice', ['G0'], 20, 22);
    const cpu = (await store.jobs.insert(newJob())).record.id;
    await store.jobs.update(cpu, { state: 'failed', finishedAt: at(1) });
    const windows = [
      [at(0), at(24)],
      [at(2), at(5)],
      [at(21), at(23)],
    ] as const;
    const usage = async () => {
      const out = [];
      for (const [from, to] of windows) {
        const { records, pruned } = await store.jobs.usageSources(from, to);
        const window = { fromMs: Date.parse(from), toMs: Date.parse(to) };
        out.push(gpuSecondsByOwner(records, window, Date.parse(at(30)), pruned));
      }
      return out;
    };
    const before = await usage();
    assert.ok(before[0]!.length === 2, 'both owners used GPUs in the day');
    assert.equal(await store.retention.pruneJobs(at(10), 2, usageToKeep), 2, 'a batch of two, oldest first');
    assert.equal(await store.retention.pruneJobs(at(10), 2, usageToKeep), 1);
    assert.equal(await store.retention.pruneJobs(at(10), 2, usageToKeep), 0);
    for (const id of [...old, cpu]) assert.equal(await store.jobs.get(id), undefined, `${id} is pruned`);
    assert.ok(await store.jobs.get(young), 'a job finished after the cutoff stays');
    assert.deepEqual(await store.logs.tail(old[0]!, 10), []);
    assert.deepEqual(
      (await store.jobs.list({ label: { key: 'team', value: 'ml' }, limit: 10 })).map((j) => j.id),
      [young],
    );
    assert.deepEqual(await usage(), before, 'usage reads the pruned jobs’ GPU time from the summary');
    assert.equal((await store.jobs.usageSources(at(0), at(24))).pruned.length, 2, 'one interval per attempt that held GPUs');
  });
}

async function logLine(store: Store, jobId: string): Promise<void> {
  const s = await store.logs.state(jobId);
  await store.logs.append(jobId, [{ stream: 'stdout', line: 'x', time: 1 }], {
    ...s,
    nextSeq: s.nextSeq + 1,
    stdoutRecords: s.stdoutRecords + 1,
  });
}

onBothStores('job store', contract);
