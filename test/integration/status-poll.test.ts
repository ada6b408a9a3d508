// The status poll, GET /v1/jobs/{id}: one route answers it, through the
// same pipeline as every request (request id, one log line, the latency
// metric), and every refusal is problem+json.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { request } from 'undici';
import { client, startGantry, TEST_IMAGE, tokensFile } from '../helpers/gantry.js';

interface Line {
  msg: string;
  reqId?: string;
  [k: string]: unknown;
}

function captureLines() {
  const lines: Line[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Line);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, dest), lines };
}

/** The request's log line, found by the id the caller sent (kept beside Gantry's own as clientRequestId). */
async function requestLine(lines: Line[], clientRequestId: string): Promise<Line> {
  for (let i = 0; i < 100; i++) {
    const found = lines.filter((l) => l.msg === 'request' && l.clientRequestId === clientRequestId);
    if (found.length > 0) {
      assert.equal(found.length, 1, `one request line for ${clientRequestId}`);
      return found[0]!;
    }
    await sleep(20);
  }
  throw new Error(`no request line for ${clientRequestId}`);
}

const tokens = { alice: 'alice-token-0123456789abcdef', bob: 'bob-token-0123456789abcdef', metrics: 'metrics-token-0123456789abcd' };

test('GET /v1/jobs/{id}: the same answer with or without a query string, logged and counted once, refusals as problems', async (t) => {
  const file = tokensFile([
    { owner: 'alice', scopes: ['submit', 'read'], token: tokens.alice },
    { owner: 'bob', scopes: ['submit', 'read'], token: tokens.bob },
    { owner: 'ops', scopes: ['metrics'], token: tokens.metrics },
  ]);
  const cap = captureLines();
  const g = await startGantry(t, { GANTRY_TOKENS_FILE: file, GANTRY_LOG_LEVEL: 'info' }, { logger: cap.logger });
  const observed = () =>
    g.app.gantry.metrics.httpDuration
      .get()
      .values.find((v) => v.metricName.endsWith('_count') && v.labels.route === '/v1/jobs/:id' && v.labels.status_code === '200')?.value ??
    0;

  const alice = client(g.url, tokens.alice);
  const job = await alice.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo hi'] });
  await alice.waitFor(job.id);

  const get = async (url: string, reqId: string, token = tokens.alice) => {
    const res = await request(`${g.url}${url}`, { headers: { authorization: `Bearer ${token}`, 'x-request-id': reqId } });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };
  const before = observed();
  const direct = await get(`/v1/jobs/${job.id}`, 'fast-1');
  const routed = await get(`/v1/jobs/${job.id}?via=query`, 'routed-1');
  assert.equal(observed(), before + 2, 'both are counted in the latency histogram, under the route');

  assert.equal(direct.status, 200);
  assert.equal(direct.text, routed.text, 'the same body, byte for byte');
  assert.equal(JSON.parse(direct.text).state, 'succeeded');
  const comparable = (h: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'date' && k !== 'x-request-id'));
  assert.deepEqual(comparable(direct.headers), comparable(routed.headers), 'the same headers');
  // The request id is Gantry's own, whatever the caller sent (its own is kept in the log line as a claim).
  assert.match(String(direct.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.notEqual(direct.headers['x-request-id'], routed.headers['x-request-id']);

  const lineDirect = await requestLine(cap.lines, 'fast-1');
  const lineRouted = await requestLine(cap.lines, 'routed-1');
  const comparableLine = (l: Line) =>
    Object.fromEntries(Object.entries(l).filter(([k]) => !['reqId', 'clientRequestId', 'url', 'ms', 'time'].includes(k)));
  assert.deepEqual(comparableLine(lineDirect), comparableLine(lineRouted), 'the same log line');
  assert.deepEqual(Object.keys(lineDirect), Object.keys(lineRouted), 'with its fields in the same order');
  assert.equal(lineDirect.url, `/v1/jobs/${job.id}`);
  assert.equal(lineDirect.reqId, direct.headers['x-request-id'], "the line carries Gantry's request id, as the answer does");
  assert.equal(typeof lineDirect.ms, 'number');

  // Gantry's own request id also when the caller sends a malformed one.
  const noId = await request(`${g.url}/v1/jobs/${job.id}`, {
    headers: { authorization: `Bearer ${tokens.alice}`, 'x-request-id': 'bad id' },
  });
  await noId.body.text();
  assert.match(String(noId.headers['x-request-id']), /^[0-9a-f-]{36}$/);

  const problem = (r: { headers: Record<string, unknown>; text: string }) => {
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
    return JSON.parse(r.text) as { status: number; type: string };
  };
  const wrong = await get(`/v1/jobs/${job.id}`, 'wrong-1', 'not-a-token');
  assert.equal(wrong.status, 401);
  assert.match(String(wrong.headers['www-authenticate']), /invalid_token/);
  assert.equal(problem(wrong).status, 401);
  const noToken = await request(`${g.url}/v1/jobs/${job.id}`);
  assert.equal(noToken.statusCode, 401);
  await noToken.body.text();
  const scopeless = await get(`/v1/jobs/${job.id}`, 'scope-1', tokens.metrics);
  assert.equal(scopeless.status, 403, 'a token without the read scope');
  assert.equal(problem(scopeless).status, 403);
  const otherOwner = await get(`/v1/jobs/${job.id}`, 'bob-1', tokens.bob);
  assert.equal(otherOwner.status, 404, "another owner's job does not exist for bob");
  assert.equal(problem(otherOwner).status, 404);
  const unknown = await get('/v1/jobs/00000000-0000-4000-8000-000000000000', 'unknown-1');
  assert.equal(unknown.status, 404);
  const upper = await get(`/v1/jobs/${job.id.toUpperCase()}`, 'upper-1');
  assert.equal(upper.status, 404, 'ids are matched as stored');
  const head = await request(`${g.url}/v1/jobs/${job.id}`, { method: 'HEAD', headers: { authorization: `Bearer ${tokens.alice}` } });
  assert.equal(head.statusCode, 200, 'HEAD is answered too');
  await head.body.text();
  assert.equal((await requestLine(cap.lines, 'bob-1')).status, 404, 'refusals are logged like answers');
});
