/**
 * What keeps a fleet's database costs flat in the number of nodes, the size
 * of the queue and the age of the history, against a real, throwaway
 * PostgreSQL (one cluster for the file, a fresh database per test): log
 * growth announced once per interval, telemetry kept out of the change feed,
 * a reconnection that replays only what changed, scrapes that read no
 * finished rows, and a bounded pool.
 */
import assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { usageToKeep } from '../../src/jobs/usage-report.js';
import type { GpuTelemetry } from '../../src/model/gpu-telemetry.js';
import { EMPTY_LOG_STATE, type LogState, type NewLogRecord } from '../../src/model/log.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { SWEEP_LOCK } from '../../src/store/postgres/retention.js';
import type { Store } from '../../src/store/store.js';
import { collectChanges as collect } from '../helpers/changes.js';
import { clusterForFile } from '../helpers/postgres.js';
import { newJob, nodeInfo } from '../helpers/records.js';

const { cluster, freshDatabase } = clusterForFile();

async function open(
  t: TestContext,
  url: string,
  node: string,
  o: { logAnnounceMs?: number; poolMax?: number; feedCheckMs?: number } = {},
): Promise<Store> {
  const store = await openPostgresStore({ url, node, ...o });
  t.after(() => store.close());
  return store;
}

const state = (s: Partial<LogState> = {}): LogState => ({ ...EMPTY_LOG_STATE, ...s });
const line = (seq: number): NewLogRecord => ({ stream: 'stdout', time: 1_700_000_000_000 + seq, line: `line ${seq}` });

describe('PostgreSQL store at scale', () => {
  test('log growth: many flushes within one interval wake another node once, and its follower still reads every record', async (t) => {
    const url = await freshDatabase();
    // An interval no test outlasts: what is announced is sent by close().
    const a = await open(t, url, 'a', { logAnnounceMs: 3_600_000 });
    const b = await open(t, url, 'b');
    const fb = collect(b);
    const FLUSHES = 20;
    for (let seq = 1; seq <= FLUSHES; seq++) {
      await a.logs.append('logged', [line(seq)], state({ nextSeq: seq + 1, stdoutRecords: seq }));
    }
    await a.close();
    await fb.next((c) => c.kind === 'log' && c.lastSeq === FLUSHES);
    assert.deepEqual(
      fb.changes.filter((c) => c.kind === 'log'),
      [{ kind: 'log', jobId: 'logged', lastSeq: FLUSHES }],
      'one wake-up names the last record stored',
    );
    const chunks = await b.logs.chunks('logged', 0, { chunks: 100, lines: 1_000 });
    assert.equal(chunks.at(-1)?.lastSeq, FLUSHES, 'the follower, reading from its offset, gets every record');
    assert.equal(chunks.length, FLUSHES);
  });

  test('log growth: one announcement names every job that wrote in the interval', async (t) => {
    const url = await freshDatabase();
    const a = await open(t, url, 'a', { logAnnounceMs: 3_600_000 });
    const b = await open(t, url, 'b');
    const fb = collect(b);
    const JOBS = 300; // more names than one notification's payload holds
    for (let i = 0; i < JOBS; i++) await a.logs.append(`job-with-a-long-name-${i}`, [line(1)], state({ nextSeq: 2, stdoutRecords: 1 }));
    await a.close();
    await fb.next((c) => c.kind === 'log' && c.jobId === `job-with-a-long-name-${JOBS - 1}`);
    const heard = fb.changes.filter((c) => c.kind === 'log').map((c) => (c.kind === 'log' ? c.jobId : ''));
    assert.equal(new Set(heard).size, JOBS);
    assert.equal(heard.length, JOBS, 'each job once');
  });

  test('telemetry: a GPU sample is stored where the job view reads it, and announced to no node', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const fb = collect(b);
    const node = await a.nodes.register(nodeInfo('a'));
    const { record } = await a.jobs.insert(newJob());
    await a.jobs.claim(record.id, node);
    const fence = { node: 'a', attempt: 1, epoch: node.epoch };
    await a.jobs.update(record.id, { state: 'running', gpus: ['GPU-a-0'], startedAt: new Date().toISOString() }, { fence });
    await fb.next((c) => c.kind === 'job' && c.state === 'running');
    const before = fb.changes.length;

    const summary = { attempt: 1, samples: 3 } as unknown as GpuTelemetry;
    assert.ok(await a.jobs.update(record.id, { gpuTelemetry: summary }, { fence }), 'the fenced write is made');
    // A later announced write is a barrier: the feed delivers in commit order.
    await a.jobs.insert(newJob({ id: 'barrier' }));
    await fb.next((c) => c.kind === 'job' && c.jobId === 'barrier');
    assert.deepEqual(
      fb.changes.slice(before).map((c) => (c.kind === 'job' ? c.jobId : c.kind)),
      ['barrier'],
      'the sample was not announced',
    );
    assert.deepEqual((await b.jobs.get(record.id, { fresh: true }))?.gpuTelemetry, summary, 'another node reads it from the row');
  });

  test('retention: a batch that finds another node sweeping deletes nothing; two sweeps at once delete each job’s logs once', async (t) => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(t, url, 'a'), open(t, url, 'b')]);
    const JOBS = 7;
    for (let i = 0; i < JOBS; i++) {
      const { record } = await a.jobs.insert(newJob({ id: `old-${i}` }));
      await a.jobs.update(record.id, { state: 'succeeded', finishedAt: '2030-01-01T00:00:00.000Z' });
      await a.logs.append(record.id, [line(1)], state({ nextSeq: 2, stdoutRecords: 1 }));
    }
    const cutoff = '2030-01-02T00:00:00.000Z';
    const other = await client(t, url);
    await other.query('BEGIN');
    await other.query(`SELECT pg_advisory_xact_lock(${SWEEP_LOCK})`);
    assert.equal(await b.retention.pruneLogs(cutoff, 10), null, 'the lock is held: this node leaves the sweep to the other');
    assert.equal(await b.retention.pruneJobs(cutoff, 10, usageToKeep), null);
    assert.equal((await b.logs.tail('old-0', 10)).length, 1, 'nothing was deleted');
    await other.query('COMMIT');

    const sweep = async (store: Store) => {
      let deleted = 0;
      for (;;) {
        const n = await store.retention.pruneLogs(cutoff, 2);
        if (n === null) return deleted;
        deleted += n;
        if (n < 2) return deleted;
      }
    };
    const [byA, byB] = await Promise.all([sweep(a), sweep(b)]);
    t.diagnostic(`a deleted the logs of ${byA} jobs, b of ${byB}`);
    assert.equal(byA + byB, JOBS, 'each job’s logs deleted by one sweep, once');
    for (let i = 0; i < JOBS; i++) assert.deepEqual(await a.logs.tail(`old-${i}`, 10), []);
    assert.equal(await a.retention.pruneLogs(cutoff, 10), 0, 'and never looked for again');
  });

  test('reconnect: the feed reads back only the jobs changed while it was away, not the queue', async (t) => {
    const url = await freshDatabase();
    const a = await open(t, url, 'a');
    const QUEUED = 50;
    for (let i = 0; i < QUEUED; i++) await a.jobs.insert(newJob({ id: `queued-${i}` }));
    const b = await open(t, url, 'b');
    const fb = collect(b);
    const admin = await client(t, cluster().url);
    const database = new URL(url).pathname.slice(1);
    // Keep b's listener away while a writes: no new connection to the
    // database (a writes on a pooled one it holds), then the listener ends.
    await a.jobs.get('queued-0', { fresh: true });
    await admin.query(`ALTER DATABASE "${database}" WITH ALLOW_CONNECTIONS false`);
    const FEED = `SELECT pid FROM pg_stat_activity WHERE application_name = 'gantry:b:feed'`;
    await admin.query(`SELECT pg_terminate_backend(pid) FROM (${FEED}) f`);
    while ((await admin.query(FEED)).rowCount) await sleep(20);
    const cancelled = await a.jobs.update('queued-7', { state: 'cancelled', cancelRequested: true, finishedAt: new Date().toISOString() });
    const { record } = await a.jobs.insert(newJob({ id: 'new' }));
    await admin.query(`ALTER DATABASE "${database}" WITH ALLOW_CONNECTIONS true`);

    await fb.next((c) => c.kind === 'job' && c.jobId === record.id, 15_000);
    // Read back as an announcement would have carried them: the jobs' records, as they are now.
    assert.deepEqual(fb.changes, [
      { kind: 'nodes' },
      { kind: 'job', jobId: 'queued-7', state: 'cancelled', node: null, cancelRequested: true, record: cancelled },
      { kind: 'job', jobId: 'new', state: 'queued', node: null, cancelRequested: false, record },
    ]);
    await a.jobs.update('queued-8', { cancelRequested: true });
    await fb.next((c) => c.kind === 'job' && c.jobId === 'queued-8');
    assert.equal(fb.changes.length, 4, 'and then hears changes as they come');
  });

  test('reconnect: the mark moves with the checks of the connection, so what was heard before is not read back', async (t) => {
    const url = await freshDatabase();
    const a = await open(t, url, 'a');
    const b = await open(t, url, 'b', { feedCheckMs: 50 });
    const fb = collect(b);
    const HEARD = 30;
    for (let i = 0; i < HEARD; i++) await a.jobs.insert(newJob({ id: `heard-${i}` }));
    await fb.next((c) => c.kind === 'job' && c.jobId === `heard-${HEARD - 1}`);
    const admin = await client(t, cluster().url);
    const FEED = `SELECT pid, query_start, state FROM pg_stat_activity WHERE application_name = 'gantry:b:feed'`;
    // Two checks that began after the inserts, the second answered: the first one's snapshot, which sees them, is the mark.
    const checkedAfter = async (since: Date) => {
      for (;;) {
        const row = (await admin.query(FEED)).rows[0];
        if (row && row.query_start > since && row.state === 'idle') return row.query_start as Date;
        await sleep(10);
      }
    };
    const { rows } = await admin.query('SELECT now() AS now');
    await checkedAfter(await checkedAfter(rows[0].now));
    const database = new URL(url).pathname.slice(1);
    await a.jobs.get('heard-0', { fresh: true });
    await admin.query(`ALTER DATABASE "${database}" WITH ALLOW_CONNECTIONS false`);
    await admin.query(`SELECT pg_terminate_backend(pid) FROM (${FEED}) f`);
    while ((await admin.query(FEED)).rowCount) await sleep(20);
    await a.jobs.insert(newJob({ id: 'missed' }));
    await admin.query(`ALTER DATABASE "${database}" WITH ALLOW_CONNECTIONS true`);
    await fb.next((c) => c.kind === 'job' && c.jobId === 'missed', 15_000);
    const since = fb.changes.findIndex((c) => c.kind === 'nodes');
    assert.deepEqual(
      fb.changes.slice(since).map((c) => (c.kind === 'job' ? c.jobId : c.kind)),
      ['nodes', 'missed'],
      'only the job written while the feed was away',
    );
  });

  test('connections: a node holds no more pooled connections than its pool allows, however many queries wait', async (t) => {
    const url = await freshDatabase();
    const a = await open(t, url, 'a', { poolMax: 2 });
    const { record } = await a.jobs.insert(newJob());
    const reads = await Promise.all(Array.from({ length: 20 }, () => a.jobs.get(record.id, { fresh: true })));
    assert.ok(reads.every((r) => r?.id === record.id));
    const admin = await client(t, url);
    const { rows } = await admin.query(`SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE application_name = 'gantry:a'`);
    assert.ok(rows[0].n <= 2, `${rows[0].n} pooled connections`);
  });
});

async function client(t: TestContext, url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  t.after(() => c.end());
  return c;
}
