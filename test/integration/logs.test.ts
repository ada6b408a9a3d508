import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LogLine } from '../../src/model/log.js';
import { ADMIN_TOKEN, containersGone, startGantry, TEST_IMAGE } from '../helpers/gantry.js';
import { readSse } from '../helpers/sse.js';

const numbers = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));

test('5,000 numbered lines come back complete and in order, as text and as SSE, with resume', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({ image: TEST_IMAGE, command: ['seq', '1', '5000'] });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.result, '5000');
  assert.deepEqual(await containersGone(job.id), [], 'container removed; logs must come from Gantry');

  const text = await g.call('GET', `/v1/jobs/${job.id}/logs`);
  assert.equal(text.status, 200);
  assert.match(String(text.headers['content-type']), /^text\/plain/);
  assert.deepEqual(text.text.split('\n').slice(0, -1), numbers(1, 5000));

  const sse = await readSse(`${g.url}/v1/jobs/${job.id}/logs`, ADMIN_TOKEN);
  assert.equal(sse.headers['x-accel-buffering'], 'no');
  const logs = sse.events.filter((e) => e.event === 'log');
  assert.deepEqual(
    logs.map((e) => (JSON.parse(e.data) as LogLine).line),
    numbers(1, 5000),
  );
  assert.deepEqual(
    logs.map((e) => e.id),
    numbers(1, 5000),
    'id = sequence number',
  );
  assert.equal(sse.events[0]!.event, 'status');
  const end = sse.events.at(-1)!;
  assert.equal(end.event, 'end');
  assert.equal(JSON.parse(end.data).state, 'succeeded');

  const resumed = await readSse(`${g.url}/v1/jobs/${job.id}/logs`, ADMIN_TOKEN, { headers: { 'last-event-id': '2500' } });
  const rl = resumed.events.filter((e) => e.event === 'log').map((e) => (JSON.parse(e.data) as LogLine).line);
  assert.deepEqual(rl, numbers(2501, 5000));
  const byQuery = await readSse(`${g.url}/v1/jobs/${job.id}/logs?lastEventId=4990`, ADMIN_TOKEN);
  assert.deepEqual(
    byQuery.events.filter((e) => e.event === 'log').map((e) => e.id),
    numbers(4991, 5000),
  );

  const tail = await g.call('GET', `/v1/jobs/${job.id}/logs?tail=3`);
  assert.equal(tail.text, '4998\n4999\n5000\n');
  const since = await g.call('GET', `/v1/jobs/${job.id}/logs?since=4997`);
  assert.equal(since.text, '4998\n4999\n5000\n');
});

test('the stderr filter returns only stderr, the stdout filter only stdout', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'for i in 1 2 3 4; do echo out$i; echo err$i >&2; done'],
  });
  await g.waitFor(job.id);
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?stream=stderr`)).text, 'err1\nerr2\nerr3\nerr4\n');
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?stream=stdout`)).text, 'out1\nout2\nout3\nout4\n');
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?stream=stderr&tail=2`)).text, 'err3\nerr4\n');
  const all = (await g.call('GET', `/v1/jobs/${job.id}/logs`)).text.split('\n').filter(Boolean);
  assert.equal(all.length, 8);
  const bad = await g.call('GET', `/v1/jobs/${job.id}/logs?stream=stdin`);
  assert.equal(bad.status, 422);
  // One read token asking for a million lines would have them built in one go, stalling every owner: refused.
  const huge = await g.call<{ errors: { field: string }[] }>('GET', `/v1/jobs/${job.id}/logs?tail=1000000`);
  assert.equal(huge.status, 422, huge.text);
  assert.match(String(huge.headers['content-type']), /^application\/problem\+json/);
  assert.deepEqual(
    huge.body.errors.map((e) => e.field),
    ['querystring.tail'],
  );
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?tail=10000`)).text.split('\n').filter(Boolean).length, 8);
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?tail=0`)).text, '');
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs?tail=1`)).text, `${all.at(-1)}\n`, 'the last record, of either stream');
});

test('a client following a running job sees every line live, then the end event', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'for i in $(seq 1 20); do echo tick $i; sleep 0.1; done; echo bye >&2; exit 4'],
  });
  const seenAt: number[] = [];
  const sse = await readSse(`${g.url}/v1/jobs/${job.id}/logs`, ADMIN_TOKEN, {
    onEvent: (e) => {
      if (e.event === 'log') seenAt.push(Date.now());
    },
  });
  const lines = sse.events.filter((e) => e.event === 'log').map((e) => JSON.parse(e.data) as LogLine);
  assert.deepEqual(
    lines.map((l) => l.line),
    [...numbers(1, 20).map((n) => `tick ${n}`), 'bye'],
  );
  assert.equal(lines.at(-1)!.stream, 'stderr');
  assert.ok(seenAt.at(-1)! - seenAt[0]! > 1000, 'lines arrived over time, not in one batch at the end');
  const states = sse.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data).state);
  assert.ok(states.includes('running'), `status events: ${states.join(',')}`);
  const end = sse.events.at(-1)!;
  assert.equal(end.event, 'end');
  assert.deepEqual([JSON.parse(end.data).state, JSON.parse(end.data).exitCode], ['failed', 4]);

  // Plain-text follow (curl -N) keeps the response open until the job ends.
  const job2 = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo a; sleep 1; echo b'] });
  const followed = await g.call('GET', `/v1/jobs/${job2.id}/logs?follow=true`);
  assert.equal(followed.text, 'a\nb\n');
});

test('the per-job cap truncates with an explicit marker', async (t) => {
  const g = await startGantry(t, { GANTRY_LOG_MAX_BYTES: '2000' });
  const job = await g.submit({ image: TEST_IMAGE, command: ['seq', '1', '2000'] });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded');
  const lines = (await g.call('GET', `/v1/jobs/${job.id}/logs`)).text.split('\n').filter(Boolean);
  const marker = lines.at(-1)!;
  assert.match(marker, /^\[gantry\] log truncated/);
  const kept = lines.slice(0, -1);
  assert.deepEqual(kept, numbers(1, kept.length));
  assert.ok(kept.join('\n').length <= 2000);
});

test('heartbeats keep an idle SSE stream alive', async (t) => {
  const g = await startGantry(t, { GANTRY_SSE_HEARTBEAT_SECONDS: '1' });
  const job = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'sleep 3; echo done'] });
  const sse = await readSse(`${g.url}/v1/jobs/${job.id}/logs`, ADMIN_TOKEN);
  assert.ok(sse.comments >= 2, `saw ${sse.comments} heartbeats`);
  assert.equal(sse.events.at(-1)!.event, 'end');
});

test('a disconnecting client frees its listeners', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'while true; do echo x; sleep 0.05; done'] });
  await g.waitFor(job.id, (j) => j.state === 'running');
  const hub = g.app.gantry.events;
  const before = hub.listenerCount();
  await Promise.all(
    Array.from({ length: 5 }, () => readSse(`${g.url}/v1/jobs/${job.id}/logs`, ADMIN_TOKEN, { stop: (_e, all) => all.length > 3 })),
  );
  for (let i = 0; i < 50 && hub.listenerCount() !== before; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(hub.listenerCount(), before);
  await g.call('POST', `/v1/jobs/${job.id}/cancel`);
  await g.waitFor(job.id);
});
