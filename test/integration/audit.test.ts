// The audit trail on a live Gantry (real HTTP on loopback, the real Docker
// engine, the embedded SQLite store): every state-changing request, refused
// ones included, has one record naming who, what, the target, the outcome and
// the request id its answer carried; only an admin lists them; no record holds
// what the request carried; a reload by SIGHUP is recorded; and a record that
// cannot be written leaves the action standing, logged and counted.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import pino from 'pino';
import { Agent, request } from 'undici';
import type { AuditRecord } from '../../src/model/audit.js';
import type { Job } from '../../src/model/job.js';
import {
  ADMIN_TOKEN,
  client,
  containersGone,
  freePort,
  ROOT,
  spawnGantry,
  startGantry,
  TEST_IMAGE,
  tempDir,
  testEnv,
  tokensFile,
} from '../helpers/gantry.js';

const NODE = 'audit-node-1';
const AIRFLOW = 'airflow-token-0123456789abcdef';
const VIEWER = 'viewer-token-0123456789abcdefg';
/** A value a job spec carries that no audit record may ever show. */
const SECRET = 'hunter2-sekret-value-7f3a9c';

interface AuditPage {
  items: AuditRecord[];
  nextCursor: string | null;
}

interface Problem {
  type: string;
  status: number;
  errors?: { field: string; message: string }[];
}

function tokens() {
  return tokensFile([
    { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
    { owner: 'airflow', scopes: ['submit', 'read', 'cancel'], token: AIRFLOW },
    { owner: 'viewer', scopes: ['read'], token: VIEWER },
  ]);
}

async function start(t: TestContext, logger?: pino.Logger) {
  const g = await startGantry(t, { GANTRY_TOKENS_FILE: tokens(), GANTRY_NODE_NAME: NODE }, logger ? { logger } : {});
  return { g, airflow: client(g.url, AIRFLOW), viewer: client(g.url, VIEWER) };
}

/** The same instant written in the +02:00 offset. */
function plusTwoHours(iso: string): string {
  return `${new Date(Date.parse(iso) + 2 * 3_600_000).toISOString().slice(0, -1)}+02:00`;
}

const header = (h: Record<string, string | string[] | undefined>, name: string) => String(h[name]);

test('each state-changing request has its record: who, what, target, outcome, request id; only an admin lists them', async (t) => {
  const { g, airflow, viewer } = await start(t);
  const requestIds: Record<string, string> = {};

  const submitted = await airflow.call<Job>('POST', '/v1/jobs', {
    body: { image: TEST_IMAGE, command: ['sleep', '30'], env: { API_KEY: SECRET } },
    headers: { 'x-request-id': 'audit-submit-1' },
  });
  assert.equal(submitted.status, 201, submitted.text);
  requestIds.submit = header(submitted.headers, 'x-request-id');
  assert.match(requestIds.submit, /^[0-9a-f-]{36}$/, 'the request id is Gantry’s own, whatever the caller sent');
  const jobId = submitted.body.id;

  const refused = await airflow.call<Problem>('POST', '/v1/jobs', {
    body: { image: 'docker.io/library/alpine:3', command: ['true'], env: { API_KEY: SECRET } },
  });
  assert.equal(refused.status, 422, refused.text);
  assert.equal(refused.body.type, 'https://gantry.dev/problems/policy');
  requestIds.policy = header(refused.headers, 'x-request-id');

  const badToken = await airflow.call('POST', '/v1/jobs', {
    body: { image: TEST_IMAGE, command: ['true'], env: { API_KEY: SECRET } },
    token: 'not-a-valid-token-0123456789',
  });
  assert.equal(badToken.status, 401);

  const noScope = await viewer.call('POST', `/v1/jobs/${jobId}/cancel`);
  assert.equal(noScope.status, 403);
  requestIds.forbidden = header(noScope.headers, 'x-request-id');

  const cancelled = await airflow.call<Job>('POST', `/v1/jobs/${jobId}/cancel`);
  assert.equal(cancelled.status, 202, cancelled.text);
  requestIds.cancel = header(cancelled.headers, 'x-request-id');
  assert.equal((await airflow.waitFor(jobId)).state, 'cancelled');

  const drained = await g.call('POST', `/v1/nodes/${NODE}/drain`);
  assert.equal(drained.status, 200, drained.text);
  requestIds.drain = header(drained.headers, 'x-request-id');
  const undrained = await g.call('POST', `/v1/nodes/${NODE}/undrain`);
  assert.equal(undrained.status, 200, undrained.text);
  requestIds.undrain = header(undrained.headers, 'x-request-id');
  const noSuchNode = await g.call('POST', '/v1/nodes/no-such-node/drain');
  assert.equal(noSuchNode.status, 404);
  requestIds.noSuchNode = header(noSuchNode.headers, 'x-request-id');

  // Reads are not recorded.
  assert.equal((await airflow.call('GET', `/v1/jobs/${jobId}`)).status, 200);

  const forbidden = await airflow.call<Problem>('GET', '/v1/audit');
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.body.type, 'https://gantry.dev/problems/forbidden');
  assert.equal((await viewer.call('GET', '/v1/audit')).status, 403);
  assert.equal((await g.call('GET', '/v1/audit', { token: null })).status, 401);

  const listed = await g.call<AuditPage>('GET', '/v1/audit');
  assert.equal(listed.status, 200, listed.text);
  assert.ok(!listed.text.includes(SECRET), 'no value the specs carried is in the trail');
  assert.ok(!listed.text.includes(AIRFLOW) && !listed.text.includes('not-a-valid-token'), 'no token is in the trail');
  const trail = listed.body.items.map(({ seq, at, ...rest }) => {
    assert.ok(Number.isInteger(seq));
    assert.ok(Math.abs(Date.parse(at) - Date.now()) < 60_000, `at ${at}`);
    return rest;
  });
  const ok = { outcome: 'ok', problemType: null, detail: {}, node: NODE, clientRequestId: null } as const;
  assert.deepEqual(trail, [
    {
      ...ok,
      actor: 'admin',
      action: 'node.drain',
      target: 'no-such-node',
      outcome: 'refused',
      status: 404,
      problemType: 'https://gantry.dev/problems/not-found',
      requestId: requestIds.noSuchNode,
    },
    { ...ok, actor: 'admin', action: 'node.undrain', target: NODE, status: 200, requestId: requestIds.undrain },
    { ...ok, actor: 'admin', action: 'node.drain', target: NODE, status: 200, requestId: requestIds.drain },
    { ...ok, actor: 'airflow', action: 'job.cancel', target: jobId, status: 202, requestId: requestIds.cancel },
    {
      ...ok,
      actor: 'viewer',
      action: 'job.cancel',
      target: jobId,
      outcome: 'refused',
      status: 403,
      problemType: 'https://gantry.dev/problems/forbidden',
      requestId: requestIds.forbidden,
    },
    {
      ...ok,
      actor: 'airflow',
      action: 'job.submit',
      target: null,
      outcome: 'refused',
      status: 422,
      problemType: 'https://gantry.dev/problems/policy',
      requestId: requestIds.policy,
      detail: { fields: ['body.image'] },
    },
    {
      ...ok,
      actor: 'airflow',
      action: 'job.submit',
      target: jobId,
      status: 201,
      requestId: requestIds.submit,
      clientRequestId: 'audit-submit-1',
    },
  ]);

  // Filters, alone and together, and pages.
  const pick = async (query: string) => {
    const r = await g.call<AuditPage>('GET', `/v1/audit?${query}`);
    assert.equal(r.status, 200, `${query}: ${r.text}`);
    return r.body.items.map((i) => i.requestId);
  };
  assert.deepEqual(await pick('actor=airflow'), [requestIds.cancel, requestIds.policy, requestIds.submit]);
  assert.deepEqual(await pick('action=job.submit&outcome=refused'), [requestIds.policy]);
  assert.deepEqual(await pick(`target=${jobId}`), [requestIds.cancel, requestIds.forbidden, requestIds.submit]);
  assert.deepEqual(await pick(`target=${NODE}&action=node.undrain`), [requestIds.undrain]);
  // from (inclusive) and to (exclusive), given with an offset: the records between, whatever milliseconds they share.
  const atOf = (id: string) => listed.body.items.find((i) => i.requestId === id)!.at;
  const [from, to] = [atOf(requestIds.forbidden), atOf(requestIds.undrain)];
  const between = listed.body.items.filter((i) => i.at >= from && i.at < to).map((i) => i.requestId);
  assert.ok(between.includes(requestIds.forbidden) && !between.includes(requestIds.undrain));
  assert.deepEqual(await pick(`from=${encodeURIComponent(plusTwoHours(from))}&to=${encodeURIComponent(plusTwoHours(to))}`), between);
  assert.deepEqual(await pick('from=2099-01-01T00:00:00%2B02:00'), []);

  const first = await g.call<AuditPage>('GET', '/v1/audit?limit=5');
  assert.equal(first.body.items.length, 5);
  assert.ok(first.body.nextCursor);
  const second = await g.call<AuditPage>('GET', `/v1/audit?limit=5&cursor=${first.body.nextCursor}`);
  assert.equal(second.body.items.length, 2);
  assert.equal(second.body.nextCursor, null);
  assert.deepEqual([...first.body.items, ...second.body.items], listed.body.items);

  // A bad filter is a problem naming the field; it is a read, so it is not recorded either.
  for (const [query, field] of [
    ['from=yesterday', 'querystring.from'],
    ['to=2026-01-05T09:30:00', 'querystring.to'],
    ['from=2026-01-05T10:00:00Z&to=2026-01-05T09:00:00Z', 'querystring.to'],
    ['action=job.delete', 'querystring.action'],
    ['outcome=maybe', 'querystring.outcome'],
    ['cursor=abc', 'querystring.cursor'],
    ['limit=0', 'querystring.limit'],
    ['owner=airflow', 'querystring.owner'],
  ] as const) {
    const r = await g.call<Problem>('GET', `/v1/audit?${query}`);
    assert.equal(r.status, 422, `${query}: ${r.text}`);
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
    assert.deepEqual(
      r.body.errors?.map((e) => e.field),
      [field],
      query,
    );
  }
  assert.equal((await g.call<AuditPage>('GET', '/v1/audit')).body.items.length, 7);
  assert.deepEqual(await containersGone(jobId), []);
});

test('the trail cannot be filled or forged from outside: 401s only counted, targets printable, request ids Gantry’s own', async (t) => {
  const { g, airflow } = await start(t);
  // Anyone who reaches the port, without a token: no record, however many.
  for (let i = 0; i < 50; i++) {
    const r = await g.call('POST', `/v1/jobs/flood-${i}/cancel`, { token: 'not-a-valid-token-0123456789' });
    assert.equal(r.status, 401);
  }
  assert.equal((await g.call('POST', '/v1/nodes/x/drain', { token: null })).status, 401);
  assert.deepEqual((await g.call<AuditPage>('GET', '/v1/audit')).body.items, [], 'no 401 is stored');
  assert.match((await g.call('GET', '/metrics')).text, /^gantry_unauthenticated_refusals_total 51$/m);

  // A target with control characters (an ANSI escape, a NUL, a bidi override) is kept as sent, escaped.
  const hostile = 'a\u001b[2Jb\u0000c\u202ed\\e';
  const refused = await airflow.call('POST', `/v1/jobs/${encodeURIComponent(hostile)}/cancel`);
  assert.equal(refused.status, 404, refused.text);
  // Two callers sending one X-Request-Id get two records with two ids, the claim beside each.
  const same = { headers: { 'x-request-id': 'chosen-by-client' } };
  await airflow.call('POST', '/v1/jobs/one/cancel', same);
  await airflow.call('POST', '/v1/jobs/two/cancel', same);
  const [two, one, escaped] = (await g.call<AuditPage>('GET', '/v1/audit')).body.items;
  assert.equal(escaped!.target, 'a\\u001b[2Jb\\u0000c\\u202ed\\\\e');
  assert.ok(!/[\p{C}]/u.test(escaped!.target!), 'nothing unprintable is stored');
  assert.notEqual(one!.requestId, two!.requestId);
  assert.deepEqual([one!.clientRequestId, two!.clientRequestId], ['chosen-by-client', 'chosen-by-client']);
});

test('a record that cannot be written leaves the action standing: logged at error level and counted', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const { g, airflow } = await start(t, pino({ level: 'error' }, sink));
  // The store refuses every audit row from now on, as a full or broken disk would.
  const raw = new Database(path.join(g.dataDir, 'gantry.db'));
  raw.exec(`CREATE TRIGGER audit_refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused for the test'); END`);
  raw.close();

  const submitted = await airflow.call<Job>('POST', '/v1/jobs', {
    body: { image: TEST_IMAGE, command: ['true'], env: { API_KEY: SECRET } },
  });
  assert.equal(submitted.status, 201, submitted.text);
  assert.equal((await airflow.waitFor(submitted.body.id)).state, 'succeeded', 'the job was made, and ran');
  assert.deepEqual(await containersGone(submitted.body.id), []);

  const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string; audit?: { action: string; target: string } });
  const failure = logged.find((l) => l.msg.startsWith('audit record not written'));
  assert.ok(failure, `an error line: ${lines.join('')}`);
  assert.equal(failure.level, 50);
  assert.equal(failure.audit?.action, 'job.submit');
  assert.equal(failure.audit?.target, submitted.body.id);
  assert.ok(!lines.join('').includes(SECRET));

  const metrics = await g.call('GET', '/metrics');
  assert.match(metrics.text, /^gantry_audit_write_failures_total 1$/m);
});

test('a SIGHUP with nothing to reload (no TLS) is recorded: no actor, no target', async (t) => {
  const dataDir = tempDir();
  const g = await spawnGantry(dataDir, { GANTRY_NODE_NAME: NODE });
  t.after(() => g.stop());
  g.proc.kill('SIGHUP');
  let items: AuditRecord[] = [];
  for (let i = 0; i < 100 && items.length === 0; i++) {
    await sleep(100);
    items = (await g.call<AuditPage>('GET', '/v1/audit?action=config.reload')).body.items;
  }
  assert.equal(items.length, 1, g.output());
  const { seq: _seq, at: _at, ...rest } = items[0]!;
  assert.deepEqual(rest, {
    node: NODE,
    actor: null,
    action: 'config.reload',
    target: null,
    outcome: 'ok',
    status: null,
    problemType: null,
    requestId: null,
    clientRequestId: null,
    detail: { signal: 'SIGHUP' },
  });
  assert.equal(g.proc.exitCode, null, 'SIGHUP does not stop Gantry');
});

test('a TLS reload by SIGHUP is recorded: ok, then failed with its reason once the certificate file is broken', async (t) => {
  const dir = tempDir('gantry-audit-tls-');
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=gantry-audit'],
    { stdio: 'pipe' },
  );
  const port = await freePort();
  const env = testEnv(tempDir(), { GANTRY_PORT: String(port), GANTRY_NODE_NAME: NODE, GANTRY_TLS_CERT: cert, GANTRY_TLS_KEY: key });
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: 'ignore',
  });
  t.after(() => proc.kill('SIGKILL'));
  // The one self-signed certificate is the only one trusted; it names no address, so its name is not checked.
  const dispatcher = new Agent({
    connect: { ca: fs.readFileSync(cert), checkServerIdentity: () => undefined },
  });
  t.after(() => dispatcher.close());
  const reloads = async () => {
    const r = await request(`https://127.0.0.1:${port}/v1/audit?action=config.reload`, {
      dispatcher,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    return ((await r.body.json()) as AuditPage).items;
  };
  const until = async (count: number) => {
    for (let i = 0; i < 300; i++) {
      if ((await reloads().catch(() => [null, null, null])).length === count) return;
      await sleep(100);
    }
    assert.fail(`no ${count} reload records`);
  };
  await until(0);
  proc.kill('SIGHUP');
  await until(1);
  fs.writeFileSync(cert, 'not a certificate');
  proc.kill('SIGHUP');
  await until(2);
  const [failed, ok] = await reloads();
  assert.deepEqual([ok!.target, ok!.outcome, ok!.actor, ok!.detail], ['tls', 'ok', null, { signal: 'SIGHUP' }]);
  assert.deepEqual([failed!.target, failed!.outcome, failed!.actor, failed!.detail.signal], ['tls', 'failed', null, 'SIGHUP']);
  assert.ok(failed!.detail.error, 'the reason is kept');
  assert.equal(proc.exitCode, null, 'Gantry keeps running');
});
