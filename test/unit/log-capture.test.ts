import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { DRIVER_RECORD_OVERHEAD, driverLogMaxMiB, LogCapture } from '../../src/logs/capture.js';
import { SecretRedactor } from '../../src/logs/secret-redactor.js';
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

test('a secret is redacted whatever its length, wherever a line cut or a frame falls, and as base64', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-capture-'));
  const db = await openSqliteStore(dir);
  const big = crypto
    .randomBytes(15 * 1024)
    .toString('hex')
    .slice(0, 20 * 1024); // 20 KiB, one line
  const short = 'tok_0123456789abcdef';
  const redactor = SecretRedactor.of([
    { name: 'big', value: Buffer.from(big) },
    { name: 'short', value: Buffer.from(short) },
  ])!;
  const capture = await LogCapture.open({
    jobId: 'j',
    store: db.logs,
    maxBytes: 64 * 1024 * 1024,
    driver: 'local',
    log: pino({ level: 'silent' }),
    onAppend: () => undefined,
    redact: () => redactor.stream(),
  });
  // The short value straddles the 16,384-character cut of an overlong line; frames of 7 bytes split every value.
  const straddle = `${'x'.repeat(16_384 - 5)}${short}`;
  const text = `${big}\n${Buffer.from(big).toString('base64')}\n${straddle}\n`;
  await capture.consume(Readable.from(frames(text, 7)));
  await capture.finish();
  const lines = (await db.logs.chunks('j', 0, { chunks: 100, lines: 100 })).flatMap((c) => decodeChunk(c, 0)).map((l) => l.line);
  const all = lines.join('\n');
  for (const leak of [
    big.slice(0, 64),
    big.slice(-64),
    Buffer.from(big).toString('base64').slice(100, 164),
    short.slice(0, 8),
    short.slice(-8),
  ]) {
    assert.ok(!all.includes(leak), `no fragment of a secret is stored: ${leak.slice(0, 12)}…`);
  }
  assert.equal(lines[0], '[secret:big]');
  assert.equal(lines[1], '[secret:big]');
  assert.ok(lines.slice(2).join('').includes('[secret:short]'), 'the cut falls after the marker, never inside the value');
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
