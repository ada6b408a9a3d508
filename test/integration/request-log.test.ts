// Request logs: one structured pino line per request, carrying the request
// id that is also returned in X-Request-Id and stored on a submitted job.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { request } from 'undici';
import { ADMIN_TOKEN, startGantry, TEST_IMAGE } from '../helpers/gantry.js';

interface LogLine {
  level: number;
  msg: string;
  reqId?: string;
  method?: string;
  url?: string;
  route?: string;
  status?: number;
  ms?: number;
  owner?: string;
  [k: string]: unknown;
}

function captureLogs() {
  const lines: LogLine[] = [];
  let raw = '';
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      let nl: number;
      while ((nl = raw.indexOf('\n')) >= 0) {
        const line = raw.slice(0, nl);
        raw = raw.slice(nl + 1);
        if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      }
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, dest), lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The access lines: one per request, found by its id. */
const requestLines = (lines: LogLine[], id: string) => lines.filter((l) => l.msg === 'request' && l.reqId === id);

/** onResponse runs after the reply is sent: wait for its line. */
async function lineFor(lines: LogLine[], id: string): Promise<LogLine> {
  for (let i = 0; i < 100; i++) {
    const found = requestLines(lines, id);
    if (found.length > 0) {
      await sleep(20);
      assert.equal(requestLines(lines, id).length, 1, `exactly one request line for ${id}`);
      return found[0]!;
    }
    await sleep(20);
  }
  throw new Error(`no request line for ${id}`);
}

test('each request logs one structured line whose id is returned in X-Request-Id and stored on the job', async (t) => {
  const cap = captureLogs();
  const g = await startGantry(t, { GANTRY_LOG_LEVEL: 'info' }, { logger: cap.logger });

  // The request id is Gantry's own; a caller-chosen one (e.g. Airflow's dag/run/task) is logged beside it as the caller's claim.
  const given = 'airflow.dag1.run-2024-01-01.task1';
  const sub = await g.call<{ id: string; requestId: string }>('POST', '/v1/jobs', {
    body: { image: TEST_IMAGE, command: ['sh', '-c', 'echo logged'] },
    headers: { 'x-request-id': given },
  });
  assert.equal(sub.status, 201);
  const subId = String(sub.headers['x-request-id']);
  assert.match(subId, UUID, 'no caller chooses the id: two callers sending the same one cannot collide');
  assert.equal(sub.body.requestId, subId, 'the submit request id is written into the job record');
  const line = await lineFor(cap.lines, subId);
  assert.equal(line.clientRequestId, given, "the caller's id is in the line, to join its logs");
  assert.equal(line.method, 'POST');
  assert.equal(line.url, '/v1/jobs');
  assert.equal(line.route, '/v1/jobs');
  assert.equal(line.status, 201);
  assert.equal(line.owner, 'admin');
  assert.equal(typeof line.ms, 'number');
  assert.equal(line.level, 30);
  const done = await g.waitFor(sub.body.id);
  assert.equal(done.requestId, subId, 'and it stays there');

  // Without one, Gantry makes a UUID; every request gets its own.
  const a = await g.call('GET', `/v1/jobs/${sub.body.id}`);
  const b = await g.call('GET', `/v1/jobs/${sub.body.id}`);
  const idA = String(a.headers['x-request-id']);
  const idB = String(b.headers['x-request-id']);
  assert.match(idA, UUID);
  assert.notEqual(idA, idB);
  const la = await lineFor(cap.lines, idA);
  assert.equal(la.route, '/v1/jobs/:id', 'the route template, not the id, for grouping');
  assert.equal(la.url, `/v1/jobs/${sub.body.id}`);
  assert.equal(la.status, 200);
  await lineFor(cap.lines, idB);

  // A malformed id (spaces, or over 128 characters) is never echoed nor logged.
  for (const bad of ['has spaces in it', 'x'.repeat(129), 'inject\\"quote']) {
    const r = await g.call('GET', '/healthz', { headers: { 'x-request-id': bad } });
    assert.match(String(r.headers['x-request-id']), UUID);
    assert.ok(!cap.text().includes(bad));
  }

  // A new submission with its own id gets that id in its record.
  const sub2 = await g.call<{ id: string; requestId: string }>('POST', '/v1/jobs', { body: { image: TEST_IMAGE, command: ['true'] } });
  assert.equal(sub2.body.requestId, sub2.headers['x-request-id']);
  await g.waitFor(sub2.body.id);

  // Refusals are logged too, with their status and no owner; the token never appears.
  const unauth = await g.call('GET', '/v1/jobs', { token: 'wrong-token-value-123456' });
  const lu = await lineFor(cap.lines, String(unauth.headers['x-request-id']));
  assert.equal(lu.status, 401);
  assert.equal(lu.owner, undefined);
  assert.equal(lu.route, '/v1/jobs', 'a request refused by auth is logged under its route');
  const invalid = await g.call('POST', '/v1/jobs', { body: { image: TEST_IMAGE, command: ['true'], privileged: true } });
  assert.equal((await lineFor(cap.lines, String(invalid.headers['x-request-id']))).status, 422);
  const missing = await g.call('GET', '/no/such/route');
  const lm = await lineFor(cap.lines, String(missing.headers['x-request-id']));
  assert.equal(lm.status, 404);
  assert.equal(lm.route, undefined, 'no route matched');

  // Streaming responses (plain and SSE) log their line once they end.
  const plain = await g.call('GET', `/v1/jobs/${sub.body.id}/logs`);
  assert.equal(plain.text, 'logged\n');
  assert.equal((await lineFor(cap.lines, String(plain.headers['x-request-id']))).status, 200);
  const sse = await request(`${g.url}/v1/jobs/${sub.body.id}/logs`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, accept: 'text/event-stream', 'x-request-id': 'sse-follow-1' },
  });
  const sseId = String(sse.headers['x-request-id']);
  assert.match(sseId, UUID);
  assert.match(await sse.body.text(), /event: end/);
  const ls = await lineFor(cap.lines, sseId);
  assert.equal(ls.clientRequestId, 'sse-follow-1');
  assert.equal(ls.route, '/v1/jobs/:id/logs');

  const all = cap.text();
  assert.ok(!all.includes(ADMIN_TOKEN), 'no token in the log');
  assert.ok(!all.includes('wrong-token-value-123456'), 'not even a wrong one');
  assert.ok(!/authorization/i.test(all), 'no Authorization header in the log');
  // One request line per request made in this test, each with a distinct id.
  const ids = cap.lines.filter((l) => l.msg === 'request').map((l) => l.reqId);
  assert.equal(new Set(ids).size, ids.length, 'no request logged twice');
});
