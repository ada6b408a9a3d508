import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { DRIVER_RECORD_OVERHEAD, driverLogMaxMiB, LogCapture } from '../../src/logs/capture.js';
import { decodeChunk } from '../../src/store/chunk-codec.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import { frame } from '../helpers/docker-frames.js';

/** Docker's multiplexed stdout frames carrying `text`. */
function frames(text: string, frameBytes = 65536): Buffer[] {
  const out: Buffer[] = [];
  const body = Buffer.from(text);
  for (let off = 0; off < body.length; off += frameBytes) out.push(frame(1, body.subarray(off, off + frameBytes)));
  return out;
}

test('the driver file is sized for the capped log with its per-line overhead', () => {
  assert.equal(driverLogMaxMiB(512 * 1024 * 1024), 4 * 512 + 16);
  assert.ok(DRIVER_RECORD_OVERHEAD.local >= 27 && DRIVER_RECORD_OVERHEAD['json-file'] >= 70);
});

test('a flood of tiny lines is truncated before it could outgrow the log driver file a restart resumes from', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-capture-'));
  const db = await openSqliteStore(dir);
  const store = db.logs;
  const maxBytes = 4 * 1024 * 1024; // driver file 32 MiB; 800,000 two-byte lines are far under the cap itself
  const capture = await LogCapture.open({
    jobId: 'j',
    store,
    maxBytes,
    driver: 'local',
    log: pino({ level: 'silent' }),
    onAppend: () => undefined,
  });
  await capture.consume(Readable.from(frames('x\n'.repeat(800_000))));
  const state = await capture.finish();
  assert.ok(state.truncated);
  assert.ok(state.bytes < maxBytes / 2, 'stopped by the driver budget, not the byte cap');
  const budget = (driverLogMaxMiB(maxBytes) - 8) * 1024 * 1024;
  const stored = state.nextSeq - 2; // records before the marker
  assert.ok(stored * (2 + DRIVER_RECORD_OVERHEAD.local) <= budget && (stored + 1) * (2 + DRIVER_RECORD_OVERHEAD.local) > budget - 64);
  const [marker] = await store.tail('j', 1);
  assert.equal(marker?.stream, 'system');
  assert.match(marker!.line, /lines fill the 32 MiB log file Docker keeps for this job/);
  const [first] = await store.chunks('j', 0, { chunks: 1, lines: 3 });
  assert.equal(
    decodeChunk(first!, 0)
      .slice(0, 3)
      .map((l) => l.line)
      .join(),
    'x,x,x',
  );
  await db.close();
});

test("each attempt's capture has its own result and cap: nothing of an earlier attempt's stdout or truncation carries over", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-capture-'));
  const db = await openSqliteStore(dir);
  const opts = {
    jobId: 'j',
    store: db.logs,
    maxBytes: 64,
    driver: 'local' as const,
    log: pino({ level: 'silent' }),
    onAppend: () => undefined,
  };
  const attempt = async (stdout: string, stderr = '') => {
    const capture = await LogCapture.open(opts, { newContainer: true });
    await capture.consume(Readable.from([...frames(stdout), ...(stderr ? [frame(2, stderr)] : [])]));
    return capture.finish();
  };
  // Attempt 1 fills the cap; its result still follows stdout past it.
  const first = await attempt(`${'x'.repeat(80)}\nresult-of-attempt-1\n`);
  assert.equal(first.truncated, true);
  assert.equal(first.lastStdout, 'result-of-attempt-1');
  // Attempt 2 is logged although attempt 1 filled the cap, and prints no stdout: no result.
  const second = await attempt('', 'only stderr\n');
  assert.equal(second.truncated, false);
  assert.equal(second.lastStdout, null);
  const [last] = await db.logs.tail('j', 1);
  assert.deepEqual([last?.stream, last?.line], ['stderr', 'only stderr']);
  await db.close();
});
