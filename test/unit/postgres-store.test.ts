/**
 * The PostgreSQL store against a real, throwaway PostgreSQL (one cluster for
 * the file, a fresh database per test): what the JobStore contract
 * (job-store.test.ts, run against both stores) leaves out, the fleet's parts (claims, fences, the node registry and its
 * leases, the change feed between nodes), and PostgreSQL going away and
 * coming back under it.
 */
import assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { FencedError, StoreUnavailableError } from '../../src/model/errors.js';
import { EMPTY_LOG_STATE, type LogState, type NewLogRecord } from '../../src/model/log.js';
import { decodeChunk } from '../../src/store/chunk-codec.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import type { JobPatch, JobRecord, Store } from '../../src/store/store.js';
import { collectChanges as collect } from '../helpers/changes.js';
import { clusterForFile, queryOnce } from '../helpers/postgres.js';
import { newJob, nodeInfo } from '../helpers/records.js';

const { cluster, freshDatabase } = clusterForFile();

interface Warning {
  obj: object;
  msg: string;
}

/** A store of node `node` on `url`, closed after the test; its warnings are collected. */
async function open(t: TestContext, url: string, node: string): Promise<Store & { warnings: Warning[] }> {
  const warnings: Warning[] = [];
  const store = await openPostgresStore({ url, node, log: { warn: (obj, msg) => warnings.push({ obj, msg }) } });
  t.after(() => store.close());
  return Object.assign(store, { warnings });
}

const state = (s: Partial<LogState> = {}): LogState => ({ ...EMPTY_LOG_STATE, ...s });
/** The job change a write of `r` announces, but for the record it carries. */
const job = (r: JobRecord) => ({ kind: 'job', jobId: r.id, state: r.state, node: r.node, cancelRequested: r.cancelRequested });

function records(from: number, n: number, stream: 'stdout' | 'stderr' = 'stdout'): NewLogRecord[] {
  return Array.from({ length: n }, (_, i) => ({ stream, time: 1_700_000_000_000 + from + i, line: `line ${from + i}` }));
}

describe('PostgreSQL store', () => {
  test('text PostgreSQL cannot hold (NUL) is kept as U+FFFD rather than failing the write', async (t) => {
    const s = await open(t, await freshDatabase(), 'a');
    const { record } = await s.jobs.insert(newJob({ spec: { labels: { 'k\u0000': 'v\u0000' } } }));
    assert.deepEqual(
      (await s.jobs.list({ label: { key: 'k\uFFFD', value: 'v\uFFFD' }, limit: 1 })).map((j) => j.id),
      [record.id],
    );
    const updated = await s.jobs.update(record.id, { result: 'a\u0000b', reason: 'c\u0000' });
    assert.equal(updated?.result, 'a\uFFFDb');
    assert.equal(updated?.reason, 'c\uFFFD');
  });

  test('two nodes inserting with one owner and key at once make one job', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        (i % 2 ? a : b).jobs.insert(newJob({ idempotencyKey: 'same', spec: { labels: { i: String(i) } } })),
      ),
    );
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.equal(new Set(results.map((r) => r.record.id)).size, 1);
    assert.equal((await a.jobs.list({ limit: 100 })).length, 1);
    const { rows } = await queryOnce(url, 'SELECT count(*)::int AS n FROM job_labels');
    assert.equal(rows[0].n, 1, 'only the created job has labels');
  });

  test('claim: of two nodes claiming one job exactly one wins; claimed jobs leave the queue', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const na = await a.nodes.register(nodeInfo('a'));
    const nb = await b.nodes.register(nodeInfo('b'));
    const jobs = [];
    for (let i = 0; i < 20; i++) jobs.push((await a.jobs.insert(newJob())).record);
    const wins = { a: 0, b: 0 };
    for (const job of jobs) {
      const [ra, rb] = await Promise.all([a.jobs.claim(job.id, na), b.jobs.claim(job.id, nb)]);
      assert.ok((ra === undefined) !== (rb === undefined), `exactly one claim of ${job.id} succeeds`);
      const winner = ra ? 'a' : 'b';
      wins[winner]++;
      assert.equal((ra ?? rb)?.node, winner);
      assert.equal((ra ?? rb)?.state, 'queued');
      assert.equal((await a.jobs.get(job.id))?.node, winner);
    }
    assert.equal(wins.a + wins.b, 20);
    assert.deepEqual(await a.jobs.queued(), []);
    assert.equal((await a.jobs.owned('a')).claimed.length, wins.a);
    assert.equal((await b.jobs.owned('b')).claimed.length, wins.b);
    const late = (await a.jobs.insert(newJob())).record;
    assert.deepEqual(
      (await b.jobs.queued()).map((j) => j.id),
      [late.id],
    );
    const [other, node] = (await a.jobs.get(jobs[0]!.id))?.node === 'a' ? [b, nb] : [a, na];
    assert.equal(await other.jobs.claim(jobs[0]!.id, node), undefined, 'a job another node claimed cannot be claimed');
  });

  test('logs: chunks, tail, state and totals round-trip; NUL and non-ASCII lines survive', async (t) => {
    const s = await open(t, await freshDatabase(), 'a');
    const job = 'log-job';
    assert.deepEqual(await s.logs.state(job), state());
    const tricky: NewLogRecord[] = [
      { stream: 'stdout', time: 1_700_000_000_000, line: 'nul\u0000here' },
      { stream: 'stderr', time: 1_700_000_000_000, line: 'é ü 😀' },
      { stream: 'stdout', time: 1_700_000_000_001, line: '' },
    ];
    await s.logs.append(job, tricky, state({ nextSeq: 4, stdoutRecords: 2, stderrRecords: 1, bytes: 20, lastStdout: 'nul\u0000here' }));
    await s.logs.append(job, records(4, 3), state({ nextSeq: 7, stdoutRecords: 5, stderrRecords: 1, bytes: 40 }));
    await s.logs.append(
      job,
      records(7, 4, 'stderr'),
      state({ nextSeq: 11, stdoutRecords: 5, stderrRecords: 5, bytes: 60, truncated: true }),
    );

    const all = await s.logs.chunks(job, 0, { chunks: 10, lines: 1_000 });
    assert.deepEqual(
      all.map((c) => [c.firstSeq, c.lastSeq]),
      [
        [1, 3],
        [4, 6],
        [7, 10],
      ],
    );
    assert.equal(typeof all[0]!.lines, 'string');
    assert.deepEqual(
      decodeChunk(all[0]!, 0).map((l) => l.line),
      tricky.map((r) => r.line),
    );
    assert.deepEqual(
      all.flatMap((c) => decodeChunk(c, 0)).map((l) => l.seq),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
    assert.deepEqual(
      (await s.logs.chunks(job, 5, { chunks: 10, lines: 1_000 })).map((c) => c.firstSeq),
      [4, 7],
      'from the chunk holding seq 6',
    );
    assert.deepEqual(
      (await s.logs.chunks(job, 0, { chunks: 10, lines: 4 })).map((c) => c.firstSeq),
      [1, 4],
      'no chunk once the line limit is reached',
    );
    assert.deepEqual(
      (await s.logs.chunks(job, 0, { chunks: 1, lines: 1_000 })).map((c) => c.firstSeq),
      [1],
    );
    assert.deepEqual(await s.logs.chunks(job, 10, { chunks: 10, lines: 1_000 }), []);

    const tail = await s.logs.tail(job, 5);
    assert.deepEqual(
      tail.map((l) => [l.seq, l.stream, l.line]),
      [
        [6, 'stdout', 'line 6'],
        [7, 'stderr', 'line 7'],
        [8, 'stderr', 'line 8'],
        [9, 'stderr', 'line 9'],
        [10, 'stderr', 'line 10'],
      ],
    );
    assert.equal(tail[0]!.time, new Date(1_700_000_000_006).toISOString());
    assert.deepEqual(
      (await s.logs.tail(job, 3, 'stdout')).map((l) => l.seq),
      [4, 5, 6],
    );
    assert.deepEqual(
      (await s.logs.tail(job, 100, 'stdout')).map((l) => l.line),
      ['nul\u0000here', '', 'line 4', 'line 5', 'line 6'],
    );

    assert.deepEqual(await s.logs.state(job), state({ nextSeq: 11, stdoutRecords: 5, stderrRecords: 5, bytes: 60, truncated: true }));
    await s.logs.saveState(job, state({ nextSeq: 11, stdoutRecords: 5, stderrRecords: 5, bytes: 60, complete: true, error: 'x\u0000' }));
    assert.deepEqual((await s.logs.state(job)).complete, true);
    assert.deepEqual((await s.logs.state(job)).error, 'x\uFFFD');
    await s.logs.append('other', records(1, 2), state({ nextSeq: 3, stdoutRecords: 2, bytes: 7, truncated: true }));
    assert.deepEqual(await s.logs.totals(), { bytes: 67, stdoutRecords: 7, stderrRecords: 5, truncatedJobs: 1 });
    await s.logs.deleteJob(job);
    assert.deepEqual(await s.logs.chunks(job, 0, { chunks: 10, lines: 1_000 }), []);
    assert.deepEqual(await s.logs.state(job), state());
    assert.deepEqual(await s.logs.totals(), { bytes: 7, stdoutRecords: 2, stderrRecords: 0, truncatedJobs: 1 });
  });

  test('logs: a fenced append or state write by a node that no longer owns the job throws FencedError and writes nothing', async (t) => {
    const s = await open(t, await freshDatabase(), 'a');
    const { record } = await s.jobs.insert(newJob());
    await s.jobs.update(record.id, { state: 'running', node: 'a' });
    const fence = { node: 'a', attempt: 1, epoch: 1 };
    await s.logs.append(record.id, records(1, 2), state({ nextSeq: 3, stdoutRecords: 2 }), fence);
    for (const wrong of [
      { node: 'b', attempt: 1, epoch: 1 },
      { node: 'a', attempt: 2, epoch: 1 },
    ]) {
      await assert.rejects(s.logs.append(record.id, records(3, 2), state({ nextSeq: 5, stdoutRecords: 4 }), wrong), FencedError);
      await assert.rejects(s.logs.saveState(record.id, state({ nextSeq: 9 }), wrong), FencedError);
    }
    await s.jobs.update(record.id, { state: 'failed' });
    await assert.rejects(s.logs.append(record.id, records(3, 2), state({ nextSeq: 5, stdoutRecords: 4 }), fence), (err: unknown) => {
      assert.ok(err instanceof FencedError);
      assert.equal(err.jobId, record.id);
      return true;
    });
    await assert.rejects(s.logs.append('no-such-job', records(1, 1), state({ nextSeq: 2 }), fence), FencedError);
    assert.deepEqual(
      (await s.logs.chunks(record.id, 0, { chunks: 10, lines: 100 })).map((c) => [c.firstSeq, c.lastSeq]),
      [[1, 2]],
    );
    assert.deepEqual(await s.logs.state(record.id), state({ nextSeq: 3, stdoutRecords: 2 }));
    await s.logs.saveState(record.id, state({ nextSeq: 3, stdoutRecords: 2, complete: true }));
    assert.equal((await s.logs.state(record.id)).complete, true, 'an unfenced write is made');
  });

  test('nodes: register bumps the epoch and keeps drained; renew holds only for the current epoch', async (t) => {
    const s = await open(t, await freshDatabase(), 'a');
    const r1 = await s.nodes.register(nodeInfo('a'));
    assert.equal(r1.state, 'up');
    assert.equal(r1.drained, false);
    assert.equal(r1.leaseSeconds, 30);
    assert.deepEqual(r1.labels, { zone: 'a' });
    assert.deepEqual(r1.gpus, nodeInfo('a').gpus);
    assert.ok(r1.heartbeatAgeSeconds >= 0 && r1.heartbeatAgeSeconds < 1, `age ${r1.heartbeatAgeSeconds}`);
    assert.ok(!Number.isNaN(Date.parse(r1.startedAt)) && r1.heartbeatAt.endsWith('Z'));
    assert.ok(Object.isFrozen(r1));
    assert.equal(typeof r1.epoch, 'number');
    assert.equal((await s.nodes.setDrained('a', true))?.drained, true);
    const r2 = await s.nodes.register({ ...nodeInfo('a'), version: '0.3.0', labels: { zone: 'b' } });
    assert.equal(r2.epoch, r1.epoch + 1);
    assert.equal(r2.drained, true, 'a new process of a drained node stays drained');
    assert.equal(r2.version, '0.3.0');
    assert.deepEqual(r2.labels, { zone: 'b' });
    await sleep(1_100);
    assert.ok((await s.nodes.get('a'))!.heartbeatAgeSeconds >= 1);
    assert.equal(await s.nodes.renew('a', r1.epoch), null, 'an older process cannot renew');
    assert.ok((await s.nodes.get('a'))!.heartbeatAgeSeconds >= 1, 'nor move the heartbeat');
    assert.deepEqual(await s.nodes.renew('a', r2.epoch), { drained: true, othersDue: false }, 'the renewal tells the drain');
    assert.ok((await s.nodes.get('a'))!.heartbeatAgeSeconds < 1);
    assert.equal(await s.nodes.renew('ghost', 1), null);
    assert.equal(await s.nodes.setDrained('ghost', true), undefined);
    assert.equal(await s.nodes.get('ghost'), undefined);
    await s.nodes.register(nodeInfo('b'));
    assert.deepEqual(
      (await s.nodes.list()).map((n) => [n.name, n.epoch]),
      [
        ['a', r2.epoch],
        ['b', 1],
      ],
    );
  });

  test('expire: a node whose lease ran out is lost; its claimed jobs go back to the queue, the others are settled', async (t) => {
    const s = await open(t, await freshDatabase(), 'a');
    const short = await s.nodes.register(nodeInfo('short', 1));
    const long = await s.nodes.register(nodeInfo('long', 60));
    const claimed = (await s.jobs.insert(newJob())).record;
    await s.jobs.claim(claimed.id, short);
    const running = (await s.jobs.insert(newJob())).record;
    await s.jobs.claim(running.id, short);
    await s.jobs.update(running.id, { state: 'running', gpus: ['GPU-short-0'] });
    const done = (await s.jobs.insert(newJob())).record;
    await s.jobs.update(done.id, { state: 'succeeded', node: 'short' });
    const elsewhere = (await s.jobs.insert(newJob())).record;
    await s.jobs.claim(elsewhere.id, long);
    await s.jobs.update(elsewhere.id, { state: 'running' });

    const calls: [string, string][] = [];
    const settle = (record: JobRecord, node: { name: string; state: string }): JobPatch => {
      calls.push([record.id, node.name]);
      assert.equal(node.state, 'lost');
      return { state: 'failed', reason: `node ${node.name} lost`, finishedAt: '2030-01-01T00:00:00.000Z' };
    };
    assert.deepEqual(await s.nodes.expire(settle), { lost: [], settled: [] }, 'no lease has run out yet');
    assert.deepEqual(await s.nodes.renew('long', long.epoch), { drained: false, othersDue: false });
    await sleep(1_300);
    assert.deepEqual(
      await s.nodes.renew('long', long.epoch),
      { drained: false, othersDue: true },
      'the renewal tells that a lease ran out',
    );
    const { lost, settled } = await s.nodes.expire(settle);
    assert.deepEqual(
      lost.map((n) => [n.name, n.state]),
      [['short', 'lost']],
    );
    assert.ok(lost[0]!.heartbeatAgeSeconds > 1);
    assert.deepEqual(calls, [[running.id, 'short']], 'settle is asked only about the started job');
    assert.deepEqual(
      settled.map((x) => [x.record.id, x.record.state, x.record.node, x.requeued]),
      [
        [claimed.id, 'queued', null, true],
        [running.id, 'failed', 'short', false],
      ],
    );
    assert.equal((await s.jobs.get(running.id))?.reason, 'node short lost');
    assert.deepEqual(
      (await s.jobs.queued()).map((j) => j.id),
      [claimed.id],
    );
    assert.equal((await s.jobs.get(done.id))?.state, 'succeeded');
    assert.equal((await s.jobs.get(elsewhere.id))?.state, 'running');
    assert.equal((await s.nodes.get('long'))?.state, 'up');
    assert.equal(await s.nodes.renew('short', short.epoch), null, 'a lost node cannot renew');
    assert.deepEqual(await s.nodes.expire(settle), { lost: [], settled: [] }, 'a lost node is settled once');
    const back = await s.nodes.register(nodeInfo('short', 1));
    assert.equal(back.state, 'up');
    assert.equal(back.epoch, short.epoch + 1);
  });

  test('expire: a row lock held on one lapsed node does not hold up the expiry of another', async (t) => {
    const url = await freshDatabase();
    const s = await open(t, url, 'observer');
    await s.nodes.register(nodeInfo('held', 1));
    await s.nodes.register(nodeInfo('free', 1));
    await sleep(1_300);
    // A transaction left open on the row (a node that died mid-write, say): expiry must not wait for it.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    t.after(() => holder.end());
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM nodes WHERE name = 'held' FOR UPDATE`);
    const first = await s.nodes.expire(() => ({}));
    assert.deepEqual(
      first.lost.map((n) => n.name),
      ['free'],
    );
    assert.equal((await s.nodes.get('held'))?.state, 'up', 'the locked row is left for a later expiry');
    await holder.query('COMMIT');
    const second = await s.nodes.expire(() => ({}));
    assert.deepEqual(
      second.lost.map((n) => n.name),
      ['held'],
    );
  });

  test('expire: a check that refuses declares no one lost, and is told how many others are up', async (t) => {
    const url = await freshDatabase();
    const s = await open(t, url, 'observer');
    await s.nodes.register(nodeInfo('observer'));
    await s.nodes.register(nodeInfo('alive'));
    await s.nodes.register(nodeInfo('x', 1));
    await s.nodes.register(nodeInfo('y', 1));
    await sleep(1_300);
    const asked: [string[], number][] = [];
    const refused = await s.nodes.expire(
      () => assert.fail('nothing is settled while the check refuses'),
      (due, othersUp) => {
        asked.push([due.map((n) => n.name), othersUp]);
        return false;
      },
    );
    assert.deepEqual(refused, { lost: [], settled: [] });
    assert.deepEqual(asked, [[['x', 'y'], 3]], 'the observer is not among the others');
    assert.deepEqual(
      (await s.nodes.list()).map((n) => [n.name, n.state]),
      [
        ['alive', 'up'],
        ['observer', 'up'],
        ['x', 'up'],
        ['y', 'up'],
      ],
    );
    const agreed = await s.nodes.expire(
      () => ({}),
      () => true,
    );
    assert.deepEqual(
      agreed.lost.map((n) => n.name),
      ['x', 'y'],
    );
  });

  test('expire: two nodes expiring at once settle a lost node once', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const dying = await a.nodes.register(nodeInfo('dying', 1));
    await a.nodes.register(nodeInfo('dying2', 1));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { record } = await a.jobs.insert(newJob());
      await a.jobs.claim(record.id, dying);
      await a.jobs.update(record.id, { state: 'running' });
      ids.push(record.id);
    }
    await sleep(1_300);
    let calls = 0;
    const requeue = (record: JobRecord): JobPatch => {
      calls++;
      return { state: 'queued', node: null, attempt: record.attempt + 1 };
    };
    const [ra, rb] = await Promise.all([a.nodes.expire(requeue), b.nodes.expire(requeue)]);
    assert.deepEqual([...ra.lost, ...rb.lost].map((n) => n.name).sort(), ['dying', 'dying2']);
    assert.equal(ra.settled.length + rb.settled.length, 5);
    assert.equal(calls, 5);
    for (const id of ids) {
      const r = await a.jobs.get(id);
      assert.equal(r?.attempt, 2, 'one new attempt');
      assert.equal(r?.state, 'queued');
      assert.equal(r?.node, null);
    }
    assert.ok([...ra.settled, ...rb.settled].every((x) => x.requeued));
  });

  test('change feed: a write of one node reaches the other nodes, not itself, once committed', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const fa = collect(a);
    const fb = collect(b);
    const na = await a.nodes.register(nodeInfo('a'));
    await fb.next((c) => c.kind === 'nodes');

    const { record } = await a.jobs.insert(newJob());
    // Each announcement carries the job as the write left it: B follows it without reading it back.
    assert.deepEqual(await fb.next((c) => c.kind === 'job'), {
      kind: 'job',
      jobId: record.id,
      state: 'queued',
      node: null,
      cancelRequested: false,
      record,
    });
    const claimed = await a.jobs.claim(record.id, na);
    assert.deepEqual(await fb.next((c) => c.kind === 'job' && c.node === 'a'), { ...job(claimed!), record: claimed });
    const running = await a.jobs.update(record.id, { state: 'running', cancelRequested: true });
    assert.deepEqual(await fb.next((c) => c.kind === 'job' && c.state === 'running' && c.cancelRequested), {
      ...job(running!),
      record: running,
    });
    await a.logs.append(record.id, records(1, 3), state({ nextSeq: 4, stdoutRecords: 3 }), { node: 'a', attempt: 1, epoch: 1 });
    assert.deepEqual(await fb.next((c) => c.kind === 'log'), { kind: 'log', jobId: record.id, lastSeq: 3 });
    await a.logs.saveState(record.id, state({ nextSeq: 4, stdoutRecords: 3, complete: true }));
    await fb.next((c) => c.kind === 'log' && c.lastSeq === 3 && fb.changes.filter((x) => x.kind === 'log').length === 2);
    // Writes that change nothing announce nothing.
    assert.equal(await a.jobs.update(record.id, { state: 'failed' }, { state: 'queued' }), undefined);
    await assert.rejects(a.logs.append(record.id, records(4, 1), state({ nextSeq: 5 }), { node: 'b', attempt: 1, epoch: 1 }), FencedError);
    await a.nodes.setDrained('a', true);

    // B's write is a barrier: each listener hears notifications in commit
    // order, so once A hears it, A would have heard its own earlier ones.
    await b.jobs.insert(newJob({ id: 'from-b' }));
    await fa.next((c) => c.kind === 'job' && c.jobId === 'from-b');
    await fb.next((c) => c.kind === 'nodes' && fb.changes.filter((x) => x.kind === 'nodes').length === 2);
    assert.deepEqual(
      fa.changes.map((c) => (c.kind === 'job' ? { ...c, record: c.record?.id } : c)),
      [{ kind: 'job', jobId: 'from-b', state: 'queued', node: null, cancelRequested: false, record: 'from-b' }],
      'A hears only B',
    );
    assert.deepEqual(
      fb.changes.map((c) => c.kind),
      ['nodes', 'job', 'job', 'job', 'log', 'log', 'nodes'],
      'B hears each of A’s changes once, and nothing of what changed nothing',
    );
  });

  test('change feed: a job too big to carry in an announcement is announced without its record, and read afresh by who needs it', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const fb = collect(b);
    // NOTIFY's payload must stay under 8000 bytes: a spec of 9000 alone cannot go in it.
    const big = await a.jobs.insert(newJob({ id: 'big', spec: { command: ['echo', 'x'.repeat(9_000)] } }));
    const small = await a.jobs.insert(newJob({ id: 'small' }));
    await fb.next((c) => c.kind === 'job' && c.jobId === 'small');
    const [bigChange, smallChange] = fb.changes.filter((c) => c.kind === 'job');
    assert.deepEqual(bigChange, { kind: 'job', jobId: 'big', state: 'queued', node: null, cancelRequested: false, record: null });
    assert.deepEqual(smallChange, {
      kind: 'job',
      jobId: 'small',
      state: 'queued',
      node: null,
      cancelRequested: false,
      record: small.record,
    });
    assert.deepEqual(await b.jobs.get('big'), big.record);
    await a.jobs.update('big', { cancelRequested: true });
    await fb.next((c) => c.kind === 'job' && c.jobId === 'big' && c.cancelRequested);
    assert.equal((await b.jobs.get('big'))?.cancelRequested, true, 'the change without a record still drops what b kept of the job');
  });

  test('PostgreSQL restarting: the pool serves again, the feed reconnects by itself, reads back what it missed, and hears new changes', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const fb = collect(b);
    const { record } = await a.jobs.insert(newJob());
    await fb.next((c) => c.kind === 'job');
    // Connections in both pools, idle when the server goes away.
    await Promise.all([a.jobs.get(record.id), b.jobs.list({ limit: 5 }), a.settings.set('k', 'v')]);

    const restarted = Date.now();
    await cluster().restart();
    // The catch-up after a reconnection starts with a `nodes` change; nothing else changed.
    await fb.next((c) => c.kind === 'nodes', 15_000);
    t.diagnostic(`back ${Date.now() - restarted} ms after the restart began`);
    assert.equal((await a.jobs.get(record.id))?.id, record.id, 'the pool serves queries again');
    assert.equal(await a.settings.get('k'), 'v');
    await a.jobs.update(record.id, { state: 'cancelled' });
    await fb.next((c) => c.kind === 'job' && c.state === 'cancelled');
    assert.equal(fb.changes.filter((c) => c.kind === 'nodes').length, 1, 'one catch-up per reconnection');
    assert.equal(fb.changes.filter((c) => c.kind === 'resync').length, 0, 'nothing asks subscribers to read everything again');
    assert.ok(
      b.warnings.some((w) => /change feed/.test(w.msg)),
      `the lost listener is logged: ${JSON.stringify(b.warnings.map((w) => w.msg))}`,
    );
  });

  test('PostgreSQL stopped: writes and reads reject with StoreUnavailableError; once it is back everything works again', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const fa = collect(a);
    const fb = collect(b);
    const { record } = await a.jobs.insert(newJob());
    await cluster().stop();
    try {
      const unavailable = (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError, `got ${String(err)}`);
        assert.equal(err.reason, 'unavailable');
        assert.equal(err.retryAfterSeconds, 5);
        return true;
      };
      await assert.rejects(a.jobs.insert(newJob()), unavailable);
      await assert.rejects(a.jobs.update(record.id, { state: 'failed' }), unavailable);
      await assert.rejects(a.logs.append(record.id, records(1, 1), state({ nextSeq: 2 })), unavailable);
      await assert.rejects(
        a.nodes.expire(() => ({})),
        unavailable,
      );
      await assert.rejects(a.probeWritable(), unavailable);
      await assert.rejects(a.jobs.get(record.id), unavailable);
      await sleep(1_000); // the listeners retry meanwhile
    } finally {
      await cluster().start();
    }
    await Promise.all([fa.next((c) => c.kind === 'nodes', 15_000), fb.next((c) => c.kind === 'nodes', 15_000)]);
    await a.probeWritable();
    assert.equal((await a.jobs.get(record.id))?.state, 'queued', 'the writes made while it was stopped changed nothing');
    assert.equal((await a.jobs.list({ limit: 10 })).length, 1);
    await a.jobs.update(record.id, { state: 'failed' });
    await fb.next((c) => c.kind === 'job' && c.state === 'failed');
  });

  test('PostgreSQL killed (SIGKILL): the process survives its idle connections failing, and recovers once it is back', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const fb = collect(b);
    await Promise.all([a.jobs.list({ limit: 1 }), a.settings.set('x', '1')]);
    cluster().kill();
    await sleep(500);
    await cluster().start();
    await fb.next((c) => c.kind === 'nodes', 15_000);
    const { record } = await a.jobs.insert(newJob());
    await fb.next((c) => c.kind === 'job' && c.jobId === record.id);
  });

  test('three nodes opening an empty database at once migrate it once', async (t) => {
    const url = await freshDatabase();
    const stores = await Promise.all([open(t, url, 'a'), open(t, url, 'b'), open(t, url, 'c')]);
    const { rows } = await queryOnce(url, 'SELECT name FROM kysely_migration ORDER BY name');
    assert.deepEqual(
      rows.map((r) => r.name),
      [
        '0001_initial',
        '0002_audit',
        '0003_retries',
        '0004_jobs_unfinished',
        '0005_gpu_telemetry',
        '0006_run_settings',
        '0007_node_epoch',
        '0008_scale_history',
        '0009_scale_changes',
        '0010_decider_lease',
        '0011_airflow_result_document',
        '0012_harden_audit_client_request_id',
        '0013_change_relay',
        '0014_decider_row_versions',
      ],
    );
    // Every table was made by the one transaction that recorded the migrations.
    const made = await queryOnce(
      url,
      `SELECT DISTINCT c.xmin::text AS x FROM pg_class c
       WHERE c.relname IN ('jobs', 'job_labels', 'log_chunks', 'log_state', 'settings', 'nodes', 'audit')
       UNION SELECT xmin::text FROM kysely_migration`,
    );
    assert.equal(made.rows.length, 1, `one creating transaction: ${JSON.stringify(made.rows)}`);
    for (const s of stores) assert.deepEqual(s.warnings, []);
    const { record } = await stores[0]!.jobs.insert(newJob());
    assert.equal((await stores[2]!.jobs.get(record.id))?.id, record.id);
    // Opening again finds nothing to do.
    await open(t, url, 'd');
    assert.equal((await queryOnce(url, 'SELECT count(*)::int AS n FROM kysely_migration')).rows[0].n, rows.length);
  });
});
