import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecordCache } from '../../src/store/postgres/record-cache.js';
import type { JobRecord } from '../../src/store/store.js';

const rec = (id: string, state: JobRecord['state'] = 'running', gpus: string[] = []) => ({ id, state, gpus }) as unknown as JobRecord;

test('records are kept only while the feed is live, and forgotten when it is lost', () => {
  const c = new RecordCache();
  c.keep(rec('a'), c.ticket());
  assert.equal(c.get('a'), undefined, 'nothing is kept before the feed is up');
  c.setLive(true);
  const a = rec('a');
  c.keep(a, c.ticket());
  assert.equal(c.get('a'), a);
  c.setLive(false);
  assert.equal(c.get('a'), undefined);
  c.setLive(true);
  assert.equal(c.get('a'), undefined, 'what was kept before the loss stays forgotten');
});

test('a change announced while a read was in flight keeps that read out of the cache', () => {
  const c = new RecordCache();
  c.setLive(true);
  const ticket = c.ticket();
  c.drop('a'); // another node's write, heard before the read came back
  c.keep(rec('a', 'queued'), ticket);
  assert.equal(c.get('a'), undefined, 'the stale read is not kept');
  c.keep(rec('b'), ticket);
  assert.ok(c.get('b'), 'a read of another job is kept');
  const later = c.ticket();
  const fresh = rec('a', 'running');
  c.keep(fresh, later);
  assert.equal(c.get('a'), fresh, 'a read that started after the change is kept');
  c.drop('a');
  assert.equal(c.get('a'), undefined, 'a change drops the kept record');
});

test('a read in flight across a loss of the feed is not kept', () => {
  const c = new RecordCache();
  c.setLive(true);
  const ticket = c.ticket();
  c.setLive(false);
  c.setLive(true);
  c.keep(rec('a'), ticket);
  assert.equal(c.get('a'), undefined);
});

test('when the memory of drops overflows, reads older than the forgotten drops are not kept', () => {
  const c = new RecordCache();
  c.setLive(true);
  const ticket = c.ticket();
  for (let i = 0; i < 20_000; i++) c.drop(`job-${i}`);
  c.keep(rec('job-0'), ticket);
  assert.equal(c.get('job-0'), undefined, 'job-0 was dropped after the ticket, though that drop is forgotten');
});

test('a running job holding GPUs is kept only for the telemetry lag (its samples are not announced); others until a drop', async () => {
  const c = new RecordCache(20);
  c.setLive(true);
  const sampled = rec('gpu', 'running', ['GPU-0']);
  const plain = rec('cpu', 'running');
  c.keep(sampled, c.ticket());
  c.keep(plain, c.ticket());
  assert.equal(c.get('gpu'), sampled);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(c.get('gpu'), undefined, 'read again once its telemetry may have changed');
  assert.equal(c.get('cpu'), plain);
});
