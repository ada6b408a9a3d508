import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Principal } from '../../src/auth/tokens.js';
import { frozenJson } from '../../src/api/frozen-json.js';
import { JobService, specHash } from '../../src/jobs/service.js';
import type { JobSpec } from '../../src/jobs/schema.js';
import { JobHub } from '../../src/logs/hub.js';
import { openDb } from '../../src/store/db.js';
import { JobsRepo } from '../../src/store/jobs-repo.js';

// The status poll reuses a job's view and its JSON while the job's row is
// unchanged (src/jobs/service.ts, src/api/frozen-json.ts). These checks use
// a real SQLite store: every change of the job must show in the next poll.

const owner: Principal = { owner: 'team-a', scopes: new Set(['read']), isAdmin: false };

function setup() {
  const db = openDb(fs.mkdtempSync(path.join(os.tmpdir(), 'views-')));
  const service = new JobService(new JobsRepo(db), new JobHub());
  const add = () => {
    const spec = { image: 'local/busybox:latest', command: ['true'] } as JobSpec;
    const id = crypto.randomUUID();
    service.repo.insert({ id, owner: owner.owner, spec, specHash: specHash(spec), idempotencyKey: null, requestId: null, createdAt: new Date().toISOString() });
    return id;
  };
  return { db, service, add };
}

const polled = (service: JobService, id: string) => JSON.parse(frozenJson(service.get(owner, id))) as Record<string, unknown>;

test('a started job keeps one frozen view, and its JSON, until its row changes', () => {
  const { db, service, add } = setup();
  const id = add();
  service.transition(id, 'starting');
  service.transition(id, 'running', { started_at: new Date().toISOString(), container_id: 'c1' });
  const first = service.get(owner, id);
  assert.ok(Object.isFrozen(first) && Object.isFrozen(first.spec) && Object.isFrozen(first.spec.command), 'frozen all the way down');
  assert.equal(service.get(owner, id), first, 'same row, same view');
  assert.equal(frozenJson(first), JSON.stringify(first));
  assert.equal(polled(service, id).state, 'running');

  service.patch(id, { result: 'half way' });
  assert.notEqual(service.get(owner, id), first, 'a patch replaces the view');
  assert.equal(polled(service, id).result, 'half way');

  service.transition(id, 'succeeded', { exit_code: 0, finished_at: new Date().toISOString() });
  const done = polled(service, id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.exitCode, 0);
  assert.equal(done.result, 'half way');
  db.close();
});

test('a queued job is viewed afresh on every poll, so its position follows the queue', () => {
  const { db, service, add } = setup();
  const a = add();
  const b = add();
  assert.equal(polled(service, b).position, 1);
  assert.equal(Object.isFrozen(service.get(owner, b)), false);
  service.transition(a, 'cancelled', { finished_at: new Date().toISOString() });
  assert.equal(polled(service, b).position, 0);
  assert.equal(polled(service, a).state, 'cancelled');
  db.close();
});

test('queue positions are kept between writes, follow every insert and transition, and never a rolled-back one', () => {
  const { db, service, add } = setup();
  const a = add();
  const b = add();
  assert.equal(service.repo.queuePositions(), service.repo.queuePositions(), 'kept while nothing is written');
  const urgentSpec = { image: 'local/busybox:latest', command: ['true'], priority: 5 } as JobSpec;
  const urgent = crypto.randomUUID();
  service.repo.insert({ id: urgent, owner: owner.owner, spec: urgentSpec, specHash: specHash(urgentSpec), idempotencyKey: null, requestId: null, createdAt: new Date().toISOString() });
  assert.deepEqual([urgent, a, b].map((id) => polled(service, id).position), [0, 1, 2]);
  service.transition(urgent, 'starting');
  assert.deepEqual([urgent, a, b].map((id) => polled(service, id).position), [null, 0, 1]);

  // A job inserted in a transaction that rolls back is in the queue only
  // inside that transaction, and not in what is kept afterwards.
  let ghost = '';
  assert.throws(() =>
    db.transaction(() => {
      ghost = add();
      assert.equal(service.repo.queuePositions().get(ghost), 2);
      throw new Error('roll back');
    })(),
  );
  assert.equal(service.repo.queuePositions().has(ghost), false);
  assert.deepEqual([a, b].map((id) => polled(service, id).position), [0, 1]);
  db.close();
});

test('frozenJson serializes anything that is not frozen every time', () => {
  const o: { n: number } = { n: 1 };
  assert.equal(frozenJson(o), '{"n":1}');
  o.n = 2;
  assert.equal(frozenJson(o), '{"n":2}');
  assert.equal(frozenJson('x'), '"x"');
  assert.equal(frozenJson(null), 'null');
});
