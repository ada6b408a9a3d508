// Gantry's own log (src/logging.ts) is written asynchronously with a bounded
// buffer: a stdout reader that falls behind costs log lines past the buffer,
// never a stalled event loop; what is delivered is whole and in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT } from '../helpers/gantry.js';

interface Line {
  level: number;
  msg: string;
  i?: number;
  droppedLines?: number;
}

test('a burst past the buffer while stdout is not read: lines dropped, counted and reported, the rest whole and in order', async () => {
  const total = 20_000;
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/fixtures/scripts/log-burst.ts'), String(total), String(64 * 1024)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // stdout is not read until the child says the burst is written.
  proc.stdout.pause();
  let out = '';
  let err = '';
  proc.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.includes('written ')) {
      proc.stdout.on('data', (o: Buffer) => (out += o.toString()));
      proc.stdout.resume();
    }
  });
  const code = await new Promise<number | null>((resolve) => proc.once('close', resolve));
  assert.equal(code, 0, err);
  const dropped = Number(/flushed (\d+)/.exec(err)?.[1]);
  const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
  const burst = lines.filter((l) => l.msg === 'burst').map((l) => l.i!);
  assert.ok(dropped > 0, `a 64 KiB buffer cannot hold ${total} lines of ~260 bytes (dropped ${dropped})`);
  assert.ok(burst.length > 0, 'what fitted was delivered');
  assert.equal(burst.length + dropped, total, 'every line is either delivered or counted as dropped');
  // Lines reach the buffer in batches (src/logging.ts), so a drop refuses a
  // whole batch and a later, smaller one may still fit: gaps, never disorder.
  assert.ok(
    burst.every((n, k) => k === 0 || n > burst[k - 1]!),
    'the delivered lines are in order, none twice',
  );
  assert.equal(burst[0], 0, 'starting with the first');
  const report = lines.find((l) => l.msg === 'stdout is read too slowly: log lines were dropped');
  assert.equal(report?.level, 40, 'a warning says lines were dropped');
  assert.equal(report?.droppedLines, dropped, 'and how many');
});

test('a reader that is only slow loses nothing: every line arrives, in order, before exit', async () => {
  const total = 20_000;
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/fixtures/scripts/log-burst.ts'), String(total), String(64 * 1024 * 1024)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.pause();
  let out = '';
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  // Reads only after a second: ~5 MB waits in Gantry's buffer, far past what the pipe holds.
  setTimeout(() => {
    proc.stdout.on('data', (o: Buffer) => (out += o.toString()));
    proc.stdout.resume();
  }, 1000);
  const code = await new Promise<number | null>((resolve) => proc.once('close', resolve));
  assert.equal(code, 0, err);
  assert.match(err, /flushed 0\n/);
  const burst = out.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as Line).i);
  assert.deepEqual(burst, Array.from({ length: total }, (_, i) => i));
});

test('a line logged right before process.exit() still reaches stdout', async () => {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/fixtures/scripts/log-exit.ts'), '42'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  proc.stdout.on('data', (o: Buffer) => (out += o.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('close', resolve));
  assert.equal(code, 3);
  const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line & { n?: number });
  assert.deepEqual(
    lines.map((l) => [l.msg, l.n]),
    [['last line before exit', 42]],
  );
});
