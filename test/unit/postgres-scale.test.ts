/**
 * What keeps a fleet's database costs flat in the number of nodes, the size
 * of the queue and the age of the history, against a real, throwaway
 * PostgreSQL (one cluster for the file, a fresh database per test): log
 * growth announced once per interval, telemetry kept out of the change feed,
 * a reconnection that replays only what changed, scrapes that read no
 * finished rows, and a bounded pool.
 */
import assert from 'node:assert/strict';
import { after, before, describe, type TestContext, test } from 'node:test';
import type { GpuTelemetry } from '../../src/model/gpu-telemetry.js';
import { EMPTY_LOG_STATE, type LogState, type NewLogRecord } from '../../src/model/log.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import type { Store, StoreChange } from '../../src/store/store.js';
import { createDatabase, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { newJob, nodeInfo } from '../helpers/records.js';

let cluster: TestPostgres;
before(async () => {
  cluster = await startPostgres();
});
after(() => cluster.destroy());

let databases = 0;
async function freshDatabase(): Promise<string> {
  return createDatabase(cluster.url, `s${process.pid}_${++databases}`);
}

async function open(t: TestContext, url: string, node: string, o: { logAnnounceMs?: number } = {}): Promise<Store> {
  const store = await openPostgresStore({ url, node, ...o });
  t.after(() => store.close());
  return store;
}

/** Every change a store's feed delivers, and a way to wait for one. */
function collect(store: Store): { changes: StoreChange[]; next(match: (c: StoreChange) => boolean): Promise<StoreChange> } {
  const changes: StoreChange[] = [];
  const waiters: { match: (c: StoreChange) => boolean; resolve: (c: StoreChange) => void }[] = [];
  assert.ok(store.changes);
  store.changes.subscribe((c) => {
    changes.push(c);
    for (const w of [...waiters]) {
      if (w.match(c)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(c);
      }
    }
  });
  return {
    changes,
    next(match) {
      const seen = changes.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching change; got ${JSON.stringify(changes)}`)), 10_000);
        waiters.push({
          match,
          resolve: (c) => {
            clearTimeout(timer);
            resolve(c);
          },
        });
      });
    },
  };
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
});
