import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { JobSpec } from '../../src/model/job.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { JobRecord } from '../../src/store/store.js';
import { RUN_SETTINGS } from '../helpers/records.js';

// A data dir that Gantry 0.1.0 wrote (test/fixtures/data-dir-0.1.0, made by
// scripts/make-data-dir-fixture.ts with that release's code) opens with
// today's store: its schema is migrated by Kysely's Migrator, and every job,
// label, log line and setting it held is still there.

const FIXTURE = fileURLToPath(new URL('../fixtures/data-dir-0.1.0/gantry.db', import.meta.url));
const MIGRATIONS = [
  '0001_initial',
  '0002_fleet',
  '0003_audit',
  '0004_retries',
  '0005_jobs_finished',
  '0006_gpu_telemetry',
  '0007_run_settings',
  '0008_node_epoch',
  '0009_scale_history',
  '0011_airflow_result_document',
  '0012_harden_audit_client_request_id',
];

const id = (n: number) => `00000000-0000-4000-8000-00000000000${n}`;
const T0 = Date.parse('2026-11-01T10:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

/** What scripts/make-data-dir-fixture.ts stored, field by field. */
const EXPECTED: { n: number; owner: string; state: JobRecord['state']; spec: JobSpec; key: string | null; extra?: Partial<JobRecord> }[] = [
  {
    n: 1,
    owner: 'airflow',
    state: 'succeeded',
    spec: {
      image: 'python:3.12-slim',
      command: ['python', '-c', 'print("hello")'],
      name: 'train-small',
      env: { EPOCHS: '3' },
      labels: { dag: 'nightly', task: 'train' },
    },
    key: null,
    extra: {
      name: 'train-small',
      exitCode: 0,
      result: '{"accuracy": 0.93}',
      containerId: 'c0ffee0000000000000000000000000000000000000000000000000000000001',
      startedAt: at(2),
      finishedAt: at(4),
    },
  },
  { n: 2, owner: 'airflow', state: 'queued', spec: { image: 'alpine:3.20', command: ['sleep', '60'] }, key: null },
  {
    n: 3,
    owner: 'team-b',
    state: 'queued',
    spec: {
      image: 'alpine:3.20',
      command: ['echo', 'keyed'],
      labels: { dag: 'hourly', 'airflow.run': 'scheduled__2026-11-01' },
      priority: 5,
    },
    key: 'scheduled__2026-11-01T00:00:00+00:00',
    extra: { priority: 5 },
  },
  {
    n: 4,
    owner: 'airflow',
    state: 'running',
    spec: { image: 'nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04', command: ['nvidia-smi', '-L'], gpus: { count: 1 } },
    key: null,
    extra: { gpus: ['GPU-00000000-0000-0000-0000-000000000000'], startedAt: at(13), deadlineAt: at(3613) },
  },
  {
    n: 5,
    owner: 'team-b',
    state: 'cancelled',
    spec: { image: 'alpine:3.20', command: ['true'] },
    key: null,
    extra: { cancelRequested: true, reason: 'cancelled by team-b', finishedAt: at(21) },
  },
];

function copyFixture(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-upgrade-'));
  fs.copyFileSync(FIXTURE, path.join(dir, 'gantry.db'));
  return dir;
}

/** The file as SQLite sees it, read with a connection of the test's own. */
function inspect(dir: string) {
  const db = new Database(path.join(dir, 'gantry.db'), { readonly: true });
  try {
    const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[]).map((r) => r.name);
    return {
      userVersion: db.pragma('user_version', { simple: true }) as number,
      migrations: tables.includes('kysely_migration')
        ? (db.prepare(`SELECT name, timestamp FROM kysely_migration ORDER BY name`).all() as { name: string; timestamp: string }[])
        : null,
      schema: (db.prepare(`SELECT type, name, sql FROM sqlite_master ORDER BY type, name`).all() as object[]).map((r) => JSON.stringify(r)),
      rows: {
        jobs: db.prepare(`SELECT * FROM jobs ORDER BY seq`).all(),
        labels: db.prepare(`SELECT * FROM job_labels ORDER BY job_id, key`).all(),
        chunks: db.prepare(`SELECT * FROM log_chunks ORDER BY job_id, first_seq`).all(),
        logState: db.prepare(`SELECT * FROM log_state ORDER BY job_id`).all(),
      },
    };
  } finally {
    db.close();
  }
}

test('the fixture is a data dir of 0.1.0: user_version 1, no migration table, no fleet columns', () => {
  const before = inspect(copyFixture());
  assert.equal(before.userVersion, 1);
  assert.equal(before.migrations, null);
  assert.equal(before.rows.jobs.length, 5);
  assert.ok(!('node' in (before.rows.jobs[0] as object)));
});

test('a 0.1.0 data dir opens: every job, label, log line and setting is kept, the new columns have their defaults', async (t) => {
  const dir = copyFixture();
  const store = await openSqliteStore(dir);
  t.after(() => store.close());

  for (const e of EXPECTED) {
    const r = await store.jobs.get(id(e.n));
    assert.ok(r, `job ${e.n}`);
    assert.equal(r.seq, e.n);
    assert.equal(r.owner, e.owner);
    assert.equal(r.state, e.state);
    assert.deepEqual(r.spec, e.spec);
    assert.equal(r.idempotencyKey, e.key);
    assert.equal(r.requestId, `req-${e.n}`);
    assert.equal(r.node, null, 'no node recorded before the fleet');
    assert.equal(r.attempt, 1);
    assert.equal(r.resultDocument, null, 'a job from before result files wrote none: its result stays its stdout line');
    for (const [k, v] of Object.entries(e.extra ?? {})) assert.deepEqual(r[k as keyof JobRecord], v, `job ${e.n} ${k}`);
  }
  assert.equal((await store.jobs.list({ limit: 100 })).length, EXPECTED.length);

  // Labels and the idempotency key still work as indexes.
  assert.deepEqual(
    (await store.jobs.list({ label: { key: 'airflow.run', value: 'scheduled__2026-11-01' }, limit: 10 })).map((r) => r.id),
    [id(3)],
  );
  assert.deepEqual(
    (await store.jobs.list({ label: { key: 'task', value: 'train' }, limit: 10 })).map((r) => r.id),
    [id(1)],
  );
  const again = await store.jobs.insert({
    id: 'new',
    owner: 'team-b',
    spec: EXPECTED[2]!.spec,
    specHash: 'x',
    idempotencyKey: 'scheduled__2026-11-01T00:00:00+00:00',
    requestId: null,
    createdAt: new Date().toISOString(),
    settings: RUN_SETTINGS,
  });
  assert.equal(again.created, false);
  assert.equal(again.record.id, id(3));

  // Every log line, its stream and time, and the capture's state.
  assert.deepEqual(await store.logs.tail(id(1), 100), [
    { seq: 1, stream: 'stdout', time: new Date(T0 + 2100).toISOString(), line: 'epoch 1/3' },
    { seq: 2, stream: 'stdout', time: new Date(T0 + 2100).toISOString(), line: 'epoch 2/3' },
    { seq: 3, stream: 'stderr', time: new Date(T0 + 2150).toISOString(), line: 'warning: slow disk' },
    { seq: 4, stream: 'stdout', time: new Date(T0 + 3000).toISOString(), line: 'epoch 3/3' },
    { seq: 5, stream: 'stdout', time: new Date(T0 + 3001).toISOString(), line: '{"accuracy": 0.93}' },
  ]);
  assert.deepEqual(await store.logs.state(id(1)), {
    nextSeq: 6,
    stdoutRecords: 4,
    stderrRecords: 1,
    bytes: 62,
    truncated: false,
    lastStdout: '{"accuracy": 0.93}',
    error: null,
    complete: true,
  });
  assert.equal((await store.logs.chunks(id(1), 0, { chunks: 10, lines: 100 })).length, 2);
  assert.equal(await store.settings.get('generated_admin_sha256'), 'a'.repeat(64));

  // The queue as the fleet code reads it.
  assert.deepEqual(
    (await store.jobs.queued()).map((r) => r.id),
    [id(3), id(2)],
  );
  assert.deepEqual(
    (await store.jobs.holdingGpus()).map((r) => r.id),
    [id(4)],
  );

  // The job left running is the first registering node's, and its fenced writes go through.
  const self = await store.nodes.register({ name: 'gpu-host-1', labels: {}, gpus: [], version: '0.2.0', leaseSeconds: 30 });
  assert.equal(self.epoch, 1);
  assert.deepEqual(
    (await store.jobs.active('gpu-host-1')).map((r) => r.id),
    [id(4)],
  );
  assert.equal((await store.jobs.get(id(1)))?.node, null, 'an ended job keeps no node');
  const done = await store.jobs.update(
    id(4),
    { state: 'succeeded', exitCode: 0, finishedAt: new Date().toISOString() },
    { state: 'running', fence: { node: 'gpu-host-1', attempt: 1, epoch: 1 } },
  );
  assert.equal(done?.state, 'succeeded');
  const claimed = await store.jobs.claim(id(3), self);
  assert.equal(claimed?.node, 'gpu-host-1');

  const file = inspect(dir);
  assert.deepEqual(
    file.migrations?.map((m) => m.name),
    MIGRATIONS,
  );
  assert.equal(file.userVersion, 1, 'user_version is left as 0.1.0 set it');
});

test('opened with its node name, the store gives that node the job 0.1.0 left running, before any registration', async (t) => {
  const store = await openSqliteStore(copyFixture(), 'gpu-host-1');
  t.after(() => store.close());
  assert.deepEqual(
    (await store.jobs.active('gpu-host-1')).map((r) => r.id),
    [id(4)],
  );
  assert.equal((await store.jobs.get(id(1)))?.node, null, 'an ended job keeps no node');
  assert.equal((await store.jobs.get(id(2)))?.node, null, 'a queued job is no node’s');
  await store.nodes.register({ name: 'other', labels: {}, gpus: [], version: '0.2.0', leaseSeconds: 30 });
  assert.equal((await store.jobs.get(id(4)))?.node, 'gpu-host-1', 'a later registration takes nothing');
});

test('opening a migrated data dir again changes nothing', async () => {
  const dir = copyFixture();
  await (await openSqliteStore(dir)).close();
  const first = inspect(dir);
  assert.deepEqual(
    first.migrations?.map((m) => m.name),
    MIGRATIONS,
  );
  const store = await openSqliteStore(dir);
  await store.close();
  const second = inspect(dir);
  assert.deepEqual(second.migrations, first.migrations, 'no migration ran again (same names, same times)');
  assert.deepEqual(second.schema, first.schema);
  assert.deepEqual(second.rows, first.rows);
});

test('a fresh data dir migrates to the same schema as an upgraded one', async (t) => {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-fresh-')), 'data');
  const store = await openSqliteStore(dir);
  t.after(() => store.close());
  const fresh = inspect(dir);
  assert.deepEqual(
    fresh.migrations?.map((m) => m.name),
    MIGRATIONS,
  );
  assert.equal(fresh.userVersion, 0, 'user_version is not Kysely’s record');

  const { record } = await store.jobs.insert({
    id: 'j1',
    owner: 'o',
    spec: { image: 'alpine:3.20', command: ['true'] },
    specHash: 'h',
    idempotencyKey: null,
    requestId: null,
    createdAt: new Date().toISOString(),
    settings: RUN_SETTINGS,
  });
  assert.equal(record.node, null);
  assert.equal(record.attempt, 1);
  const db = new Database(path.join(dir, 'gantry.db'), { readonly: true });
  t.after(() => db.close());
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.deepEqual(
    (db.pragma('index_info(jobs_node)') as { name: string }[]).map((c) => c.name),
    ['node', 'state'],
    'a node’s jobs by state are an index seek',
  );

  // Tables, columns and indexes alike, whichever way the file got here
  // (SQLite keeps each statement's text, so compare the parsed shape).
  const upgradedDir = copyFixture();
  await (await openSqliteStore(upgradedDir)).close();
  const shape = (d: string) => {
    const x = new Database(path.join(d, 'gantry.db'), { readonly: true });
    try {
      const objects = x.prepare(`SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name`).all() as {
        name: string;
        type: string;
      }[];
      return objects.map((o) => ({
        ...o,
        columns: x.prepare(o.type === 'table' ? `PRAGMA table_xinfo("${o.name}")` : `PRAGMA index_xinfo("${o.name}")`).all(),
      }));
    } finally {
      x.close();
    }
  };
  assert.deepEqual(shape(dir), shape(upgradedDir));
});

test('a migration that fails names itself and leaves the file as it was', async () => {
  const dir = copyFixture();
  const raw = new Database(path.join(dir, 'gantry.db'));
  raw.exec(`ALTER TABLE jobs ADD COLUMN node TEXT`); // 0002_fleet will find it there
  raw.close();
  const before = inspect(dir);
  await assert.rejects(openSqliteStore(dir), (err: Error) => {
    assert.match(err.message, /schema migration 0002_fleet failed/);
    assert.match(err.message, /duplicate column name: node/);
    return true;
  });
  const after = inspect(dir);
  assert.equal(after.migrations, null, '0001_initial is not recorded either: one transaction');
  assert.deepEqual(after.schema, before.schema);
  assert.deepEqual(after.rows, before.rows);
});

test('a data dir of a newer Gantry (a migration this one does not know) is refused', async () => {
  const dir = copyFixture();
  await (await openSqliteStore(dir)).close();
  const raw = new Database(path.join(dir, 'gantry.db'));
  raw.prepare(`INSERT INTO kysely_migration (name, timestamp) VALUES ('0003_future', ?)`).run(new Date().toISOString());
  raw.close();
  await assert.rejects(openSqliteStore(dir), /cannot open the store .*0003_future is missing/);
});
