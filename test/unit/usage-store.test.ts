/**
 * jobs.overlapping, the read behind usage accounting: the jobs created
 * before a window's end and not finished before its start, in insertion
 * order, whatever their state. Real SQLite files and a real, throwaway
 * PostgreSQL; each store answers the query from an index, not a scan.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { createDatabase, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { RUN_SETTINGS } from '../helpers/records.js';

const T0 = Date.parse('2026-04-01T00:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();

/** Inserts a job created at `created`, finished at `finished` (null: still going); its id is its name. */
async function job(store: Store, name: string, created: number, finished: number | null): Promise<void> {
  await store.jobs.insert({
    id: name,
    owner: 'o',
    spec: { image: 'x' } as never,
    specHash: 'h',
    idempotencyKey: null,
    requestId: null,
    createdAt: at(created),
    settings: RUN_SETTINGS,
  });
  if (finished !== null) await store.jobs.update(name, { state: 'succeeded', finishedAt: at(finished) });
}

function contract(
  indexes: string[],
  open: (t: TestContext) => Promise<{ store: Store; plan: (from: string, to: string) => Promise<string> }>,
) {
  test('the jobs that could have held GPUs in [from, to): created before to, not finished before from; oldest first', async (t) => {
    const { store } = await open(t);
    await job(store, 'ended-before', 0, 5);
    await job(store, 'ended-at-from', 0, 10);
    await job(store, 'running-since-before', 1, null);
    await job(store, 'ended-inside', 12, 15);
    await job(store, 'ended-after', 2, 30);
    await job(store, 'created-inside', 19, null);
    await job(store, 'created-at-to', 20, null);
    await job(store, 'created-after', 25, 26);
    const ids = (await store.jobs.overlapping(at(10), at(20))).map((r) => r.id);
    assert.deepEqual(ids, ['ended-at-from', 'running-since-before', 'ended-inside', 'ended-after', 'created-inside']);
    const record = (await store.jobs.overlapping(at(10), at(20))).find((r) => r.id === 'ended-inside');
    assert.deepEqual([record?.state, record?.finishedAt, record?.attempts], ['succeeded', at(15), []], 'whole records');
    assert.deepEqual(await store.jobs.overlapping(at(100), at(200)).then((r) => r.map((j) => j.id)), [
      'running-since-before',
      'created-inside',
      'created-at-to',
    ]);
  });

  // The statement each store runs, planned on its own schema: the plan proves the index is there and usable.
  test('the query is answered from an index on finished_at', async (t) => {
    const { plan } = await open(t);
    const text = await plan(at(10), at(20));
    for (const index of indexes) assert.match(text, new RegExp(`\\b${index}\\b`), text);
  });
}

describe('SQLite', () => {
  contract(['jobs_finished'], async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-usage-'));
    const store = await openSqliteStore(dir);
    t.after(() => store.close());
    return {
      store,
      plan: async (from, to) => {
        const db = new Database(path.join(dir, 'gantry.db'), { readonly: true });
        try {
          const rows = db
            .prepare(`EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE (finished_at IS NULL OR finished_at >= ?) AND created_at < ?`)
            .all(from, to) as { detail: string }[];
          return rows.map((r) => r.detail).join('\n');
        } finally {
          db.close();
        }
      },
    };
  });
});

describe('PostgreSQL', () => {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster.destroy());
  let databases = 0;
  contract(['jobs_unfinished', 'jobs_finished'], async (t) => {
    const url = await createDatabase(cluster.url, `usage${process.pid}_${++databases}`);
    const store = await openPostgresStore({ url, node: 'a' });
    t.after(() => store.close());
    return {
      store,
      plan: async (from, to) => {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          // A handful of rows makes a sequential scan cheapest; forbid it to see which index the planner has.
          await c.query('SET enable_seqscan = off');
          const { rows } = await c.query(
            `EXPLAIN SELECT * FROM jobs WHERE finished_at IS NULL AND created_at < $2
             UNION ALL SELECT * FROM jobs WHERE finished_at >= $1 AND created_at < $2 ORDER BY seq`,
            [from, to],
          );
          return rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
        } finally {
          await c.end();
        }
      },
    };
  });
});
