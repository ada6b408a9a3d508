/**
 * Makes test/fixtures/data-dir-0.1.0/gantry.db: a data dir as Gantry 0.1.0
 * leaves it (schema tracked by `PRAGMA user_version = 1`, no migration
 * tables), for test/integration/data-dir-upgrade.test.ts.
 *
 * It was run against the code of 0.1.0, not the current tree, as:
 *
 *   git worktree add /tmp/gantry-0.1.0 c874769   # the last commit before the fleet work
 *   ln -s "$PWD/node_modules" /tmp/gantry-0.1.0/node_modules
 *   cp scripts/make-data-dir-fixture.ts /tmp/gantry-0.1.0/scripts/
 *   (cd /tmp/gantry-0.1.0 && node --import tsx scripts/make-data-dir-fixture.ts /tmp/data-dir-0.1.0)
 *   cp /tmp/data-dir-0.1.0/gantry.db test/fixtures/data-dir-0.1.0/
 *   git worktree remove --force /tmp/gantry-0.1.0
 *
 * Run in the current tree it would make a data dir of the current schema,
 * which is not what the fixture is for: the point is a file the old code
 * wrote. (`await` on the store keeps it type-correct here too, where
 * openSqliteStore returns a promise; in 0.1.0 it returned the store.)
 *
 * The jobs (ids, times and output fixed, so the file is the same each run):
 * - 00000000-…-0001 succeeded, with 5 log records over two appends, labels;
 * - 00000000-…-0002 queued;
 * - 00000000-…-0003 queued, with labels, an idempotency key and a priority;
 * - 00000000-…-0004 running with a GPU (a job left running across the upgrade);
 * - 00000000-…-0005 cancelled while queued;
 * and one setting, the admin token's digest.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { specHash } from '../src/jobs/spec-hash.js';
import { type JobSpec, JobSpecSchema } from '../src/model/job.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';

const T0 = Date.parse('2026-11-01T10:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

const SUCCEEDED: JobSpec = {
  image: 'python:3.12-slim',
  command: ['python', '-c', 'print("hello")'],
  name: 'train-small',
  env: { EPOCHS: '3' },
  labels: { dag: 'nightly', task: 'train' },
};
const QUEUED: JobSpec = { image: 'alpine:3.20', command: ['sleep', '60'] };
const KEYED: JobSpec = {
  image: 'alpine:3.20',
  command: ['echo', 'keyed'],
  labels: { dag: 'hourly', 'airflow.run': 'scheduled__2026-11-01' },
  priority: 5,
};
const RUNNING: JobSpec = { image: 'nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04', command: ['nvidia-smi', '-L'], gpus: { count: 1 } };
const CANCELLED: JobSpec = { image: 'alpine:3.20', command: ['true'] };

for (const spec of [SUCCEEDED, QUEUED, KEYED, RUNNING, CANCELLED]) JobSpecSchema.parse(spec);

const dir = process.argv[2];
if (!dir) throw new Error('usage: make-data-dir-fixture.ts <empty data dir>');
fs.mkdirSync(dir, { recursive: true });
if (fs.readdirSync(dir).length > 0) throw new Error(`${dir} is not empty`);

const store = await openSqliteStore(dir);
const { jobs, logs } = store;
const id = (n: number) => `00000000-0000-4000-8000-00000000000${n}`;
const insert = (n: number, owner: string, spec: JobSpec, key: string | null, createdAt: string) =>
  // Cast: 0.1.0's NewJob had fewer fields than today's, and the fixture must be that release's.
  jobs.insert({ id: id(n), owner, spec, specHash: specHash(spec), idempotencyKey: key, requestId: `req-${n}`, createdAt } as Parameters<
    typeof jobs.insert
  >[0]);

// 1: ran and succeeded, with its output stored as capture stores it.
await insert(1, 'airflow', SUCCEEDED, null, at(0));
await jobs.update(id(1), { state: 'pulling', pullStatus: 'Pulling from library/python', pullProgress: null }, { state: 'queued' });
await jobs.update(id(1), { state: 'starting', pullStatus: null }, { state: 'pulling' });
await jobs.update(
  id(1),
  { state: 'running', containerId: 'c0ffee0000000000000000000000000000000000000000000000000000000001', startedAt: at(2) },
  { state: 'starting' },
);
const first = [
  { stream: 'stdout' as const, line: 'epoch 1/3', time: T0 + 2100 },
  { stream: 'stdout' as const, line: 'epoch 2/3', time: T0 + 2100 },
  { stream: 'stderr' as const, line: 'warning: slow disk', time: T0 + 2150 },
];
await logs.append(id(1), first, {
  nextSeq: 4,
  stdoutRecords: 2,
  stderrRecords: 1,
  bytes: 35,
  truncated: false,
  lastStdout: 'epoch 2/3',
  error: null,
  complete: false,
});
const second = [
  { stream: 'stdout' as const, line: 'epoch 3/3', time: T0 + 3000 },
  { stream: 'stdout' as const, line: '{"accuracy": 0.93}', time: T0 + 3001 },
];
const done = { nextSeq: 6, stdoutRecords: 4, stderrRecords: 1, bytes: 62, truncated: false, lastStdout: '{"accuracy": 0.93}', error: null };
await logs.append(id(1), second, { ...done, complete: false });
await logs.saveState(id(1), { ...done, complete: true });
await jobs.update(id(1), { state: 'succeeded', exitCode: 0, result: '{"accuracy": 0.93}', finishedAt: at(4) }, { state: 'running' });

// 2: waiting in the queue.
await insert(2, 'airflow', QUEUED, null, at(10));

// 3: waiting, with labels, an idempotency key and a priority, of another owner.
await insert(3, 'team-b', KEYED, 'scheduled__2026-11-01T00:00:00+00:00', at(11));

// 4: running on GPU 0 (live-restore keeps it running across an upgrade).
await insert(4, 'airflow', RUNNING, null, at(12));
await jobs.update(id(4), { state: 'pulling' }, { state: 'queued' });
await jobs.update(id(4), { state: 'starting', gpus: ['GPU-00000000-0000-0000-0000-000000000000'] }, { state: 'pulling' });
await jobs.update(
  id(4),
  {
    state: 'running',
    containerId: 'c0ffee0000000000000000000000000000000000000000000000000000000004',
    startedAt: at(13),
    deadlineAt: at(3613),
  },
  { state: 'starting' },
);

// The generated admin token's digest, as src/auth/tokens.ts keeps it.
await store.settings.set('generated_admin_sha256', 'a'.repeat(64));

// 5: cancelled before it left the queue.
await insert(5, 'team-b', CANCELLED, null, at(20));
await jobs.update(
  id(5),
  { state: 'cancelled', cancelRequested: true, reason: 'cancelled by team-b', finishedAt: at(21) },
  { state: 'queued' },
);

await store.close();

// Everything into the main file, so gantry.db alone is the data dir.
const file = path.join(dir, 'gantry.db');
const db = new Database(file);
db.pragma('wal_checkpoint(TRUNCATE)');
db.close();
for (const extra of ['-wal', '-shm']) fs.rmSync(`${file}${extra}`, { force: true });
console.log(`wrote ${file} (${fs.statSync(file).size} bytes)`);
