// The retention sweeps on a real SQLite store: the logs of jobs that ended
// before the cutoff (src/logs/retention.ts), with a job retention the jobs'
// records, and apart from them the audit records written before the audit
// cutoff (src/logs/audit-retention.ts) go; newer ones, and everything when a
// setting is 0, stay.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import pino from 'pino';
import { startAuditRetention } from '../../src/logs/audit-retention.js';
import { startRetention, sweepRetention } from '../../src/logs/retention.js';
import { EMPTY_LOG_STATE } from '../../src/model/log.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { RUN_SETTINGS } from '../helpers/records.js';

const DAY = 86_400_000;
const ago = (days: number) => new Date(Date.now() - days * DAY).toISOString();

/** A store holding a job that ended `days` ago with one log line, and an audit record written `days` ago, for each of 40 and 1. */
async function seeded(t: TestContext): Promise<Store> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-retention-'));
  const store = await openSqliteStore(dir);
  t.after(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const raw = new Database(path.join(dir, 'gantry.db'));
  try {
    for (const days of [40, 1]) {
      const id = `job-${days}`;
      await store.jobs.insert({
        id,
        owner: 'o',
        spec: { image: 'local/busybox:latest', command: ['true'] },
        specHash: 'h',
        idempotencyKey: null,
        requestId: null,
        createdAt: ago(days),
        settings: RUN_SETTINGS,
      });
      await store.jobs.update(id, { state: 'succeeded', exitCode: 0, finishedAt: ago(days) });
      await store.logs.append(id, [{ stream: 'stdout', line: `ran ${days} days ago`, time: Date.parse(ago(days)) }], {
        ...EMPTY_LOG_STATE,
        nextSeq: 2,
        stdoutRecords: 1,
      });
      // The store stamps a record with its own clock: an old one is written around it.
      raw
        .prepare(`INSERT INTO audit (at, node, action, target, outcome, status, detail) VALUES (?, 'n1', 'job.submit', ?, 'ok', 201, '{}')`)
        .run(ago(days), id);
    }
  } finally {
    raw.close();
  }
  return store;
}

const targets = async (store: Store) => (await store.audit.list({ limit: 10 })).map((r) => r.target);

test('a sweep deletes the logs older than the retention, and keeps the newer; the audit trail is not its to touch', async (t) => {
  const store = await seeded(t);
  const stop = startRetention({ store, settings: { logDays: 30, jobDays: 0, keepMs: 0 }, log: pino({ level: 'silent' }) });
  t.after(stop);
  for (let i = 0; i < 100 && (await store.logs.tail('job-40', 10)).length > 0; i++) await sleep(20);
  assert.deepEqual(await targets(store), ['job-1', 'job-40'], 'GANTRY_LOG_RETENTION_DAYS deletes no audit record');
  assert.deepEqual(await store.logs.tail('job-40', 10), []);
  assert.equal((await store.logs.tail('job-1', 10)).length, 1);
  assert.ok(await store.jobs.get('job-40'), 'the job record stays');
});

test('job retention: records of jobs that ended before the cutoff go, unless fair share still counts them', async (t) => {
  const store = await seeded(t);
  const log = pino({ level: 'silent' });
  await sweepRetention({ store, settings: { logDays: 0, jobDays: 30, keepMs: 50 * DAY }, log });
  assert.ok(await store.jobs.get('job-40'), 'within fair share’s horizon');
  await sweepRetention({ store, settings: { logDays: 0, jobDays: 30, keepMs: 0 }, log });
  assert.equal(await store.jobs.get('job-40'), undefined);
  assert.ok(await store.jobs.get('job-1'));
  assert.deepEqual(await targets(store), ['job-1', 'job-40'], 'logDays 0 keeps the audit records');
});

test('audit retention is its own: records older than its days go, newer ones and the logs stay', async (t) => {
  const store = await seeded(t);
  const stop = startAuditRetention({ audit: store.audit, days: 30, log: pino({ level: 'silent' }) });
  t.after(stop);
  for (let i = 0; i < 100 && (await targets(store)).length > 1; i++) await sleep(20);
  assert.deepEqual(await targets(store), ['job-1']);
  assert.equal((await store.logs.tail('job-40', 10)).length, 1, 'no log line is its to delete');
});

test('0 keeps everything', async (t) => {
  const store = await seeded(t);
  const stop = startRetention({ store, settings: { logDays: 0, jobDays: 0, keepMs: 0 }, log: pino({ level: 'silent' }) });
  t.after(stop);
  await sleep(200);
  assert.deepEqual(await targets(store), ['job-1', 'job-40']);
  assert.equal((await store.logs.tail('job-40', 10)).length, 1);
});
