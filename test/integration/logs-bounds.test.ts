import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../../src/model/job.js';
import { ADMIN_TOKEN, containersOf, spawnGantry, startGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

test("a client that stops reading does not grow Gantry's memory, and is dropped after the stall limit", async (t) => {
  const g = await spawnGantry(tempDir(), { GANTRY_SSE_STALL_SECONDS: '4' });
  t.after(() => g.stop('SIGKILL'));
  // ~14 MB of log in 2M lines (~190 MB as SSE), far more than any socket buffer.
  const job = await g.submit({ image: TEST_IMAGE, command: ['seq', '1', '2000000'] });
  const done = await g.waitFor(job.id, undefined, 180_000);
  assert.equal(done.state, 'succeeded');
  const pid = g.proc.pid!;
  const baseline = rssMiB(pid);

  const port = Number(new URL(g.url).port);
  const sock = net.connect(port, '127.0.0.1');
  sock.write(
    `GET /v1/jobs/${job.id}/logs HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`,
  );
  let received = '';
  sock.once('data', (d) => {
    received += d.toString();
    sock.pause(); // read one chunk, then nothing
  });
  const started = Date.now();
  let peak = baseline;
  while (Date.now() - started < 6000) {
    peak = Math.max(peak, rssMiB(pid));
    await sleep(100);
  }
  // Past the 4 s stall limit the server has closed the connection: reading
  // on now drains what the kernel buffered and then meets the end, without
  // the job's `end` event.
  const ended = new Promise<boolean>((resolve) => sock.once('close', () => resolve(true)));
  sock.on('data', (d) => (received += d.toString()));
  sock.resume();
  assert.equal(await Promise.race([ended, sleep(15_000).then(() => false)]), true, 'the stalled client was dropped');
  assert.ok(received.includes('event: log'), 'the stream had started');
  assert.ok(!received.includes('event: end'), 'it was cut, not completed');
  assert.ok(received.length < 100 * 1024 * 1024, `received ${received.length} bytes of ~190 MB`);
  // Gantry keeps at most one batch and the socket buffer per client.
  assert.ok(peak - baseline < 40, `RSS grew ${Math.round(peak - baseline)} MiB (baseline ${Math.round(baseline)} MiB)`);
  t.diagnostic(
    `baseline RSS ${baseline.toFixed(1)} MiB, peak while stalled ${peak.toFixed(1)} MiB, delivered ${(received.length / 1e6).toFixed(1)} MB before the drop`,
  );
  sock.destroy();

  // Gantry is still fine and the client can resume where it wants.
  const resumed = await g.call('GET', `/v1/jobs/${job.id}/logs?since=1999998`);
  assert.equal(resumed.text, '1999999\n2000000\n');
});

const isRoot = process.getuid?.() === 0;

test('a full disk fails log capture cleanly and is reported, a submit is refused with 507 and Retry-After; all resumes once space is back', {
  skip: !isRoot && 'needs root to mount a tmpfs',
}, async (t) => {
  const dir = tempDir('gantry-full-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir]);
  t.after(() => execFileSync('umount', ['-l', dir]));
  const g = await startGantry(t, {}, {}, dir);
  // Leave a few hundred KiB free, then run a job that prints megabytes.
  const filler = path.join(dir, 'filler');
  const free = () => fs.statfsSync(dir).bavail * fs.statfsSync(dir).bsize;
  fs.writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 400 * 1024)));
  const job = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'seq 1 400000; echo finished'] });
  let ready = 200;
  for (let i = 0; i < 600 && ready === 200; i++) {
    await sleep(100);
    ready = (await g.call('GET', '/readyz', { token: null })).status;
  }
  assert.equal(ready, 503, '/readyz reports the store as not writable');
  assert.equal((await g.call('GET', '/healthz', { token: null })).status, 200, 'Gantry keeps serving');
  const refused = await g.call<{ type: string; status: number; detail: string }>('POST', '/v1/jobs', {
    body: { image: TEST_IMAGE, command: ['true'] },
  });
  assert.equal(refused.status, 507, refused.text);
  assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
  assert.equal(refused.body.type, 'https://gantry.dev/problems/store-full');
  assert.match(refused.body.detail, /disk is full.*nothing was stored/);
  assert.ok(Number(refused.headers['retry-after']) > 0, 'Retry-After says when to try again');
  fs.rmSync(filler);
  const accepted = await g.call<Job>('POST', '/v1/jobs', { body: { image: TEST_IMAGE, command: ['true'] } });
  assert.equal(accepted.status, 201, 'a submit is accepted again once there is room');
  const done = await g.waitFor(job.id, undefined, 120_000);
  assert.equal(done.state, 'succeeded', `the real outcome, not a storage error: ${done.reason}`);
  assert.equal(done.exitCode, 0);
  assert.match(done.reason ?? '', /logs incomplete: log storage failed: .*database or disk is full/);
  const head = await g.call('GET', `/v1/jobs/${job.id}/logs?tail=1`);
  assert.equal(head.status, 200, 'what was stored stays readable');
  // The store on the tmpfs goes with the test, and with it the record the suite's cleanup finds containers by: see this one removed.
  assert.equal((await g.waitFor(accepted.body.id, undefined, 60_000)).state, 'succeeded', 'the job accepted once there was room runs');
  for (let i = 0; i < 100 && (await containersOf(accepted.body.id)).length > 0; i++) await sleep(100);
  assert.deepEqual(await containersOf(accepted.body.id), [], 'its container removed once its end is recorded');
});
