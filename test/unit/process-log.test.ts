// Gantry's own log (src/logging.ts) is written asynchronously with a bounded
// buffer: a stdout reader that falls behind, or a stdout that cannot be
// written at all, costs log lines (counted), never a stalled event loop or a
// hung exit; what is delivered is whole and in order.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

// Not from test/helpers/gantry.ts, which loads the whole app: these tests need only src/logging.ts.
const ROOT = path.resolve(import.meta.dirname, '..', '..');

interface Line {
  level: number;
  msg: string;
  i?: number;
  droppedLines?: number;
}

test('a burst past the buffer while stdout is not read: lines dropped, counted and reported, the rest whole and in order', async () => {
  const total = 20_000;
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'test/fixtures/scripts/log-burst.ts'), String(total), String(64 * 1024)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
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
  const lines = out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
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
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'test/fixtures/scripts/log-burst.ts'), String(total), String(64 * 1024 * 1024)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
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
  const burst = out
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as Line).i);
  assert.deepEqual(
    burst,
    Array.from({ length: total }, (_, i) => i),
  );
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
  const lines = out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line & { n?: number });
  assert.deepEqual(
    lines.map((l) => [l.msg, l.n]),
    [['last line before exit', 42]],
  );
});

test('stdout that cannot be written (/dev/full: ENOSPC): every line counted as dropped, the logger keeps going, exit does not wait on it', async () => {
  // A child with its process log on /dev/full, where every write fails with
  // ENOSPC; it reports its counts on stderr.
  const child = `
    import fs from 'node:fs';
    import { setTimeout as sleep } from 'node:timers/promises';
    const { flushLog, processLogger } = await import(${JSON.stringify(path.join(ROOT, 'src/logging.ts'))});
    const { log, droppedLines } = processLogger('info', { fd: fs.openSync('/dev/full', 'w') });
    for (let i = 0; i < 300; i++) log.info({ i }, 'line');
    await flushLog(log);
    process.stderr.write('flushed ' + droppedLines() + '\\n');
    await sleep(2000); // the failed writes' lines and the warning about them, dropped in turn
    process.stderr.write('later ' + droppedLines() + '\\n');
    log.info('last line before exit');
    process.exit(0);
  `;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', child], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
  const code = await new Promise<number | null>((resolve) => proc.once('close', resolve));
  clearTimeout(killer);
  assert.equal(code, 0, `exits by itself, with the code it was given:\n${err}`);
  assert.ok(Number(/flushed (\d+)/.exec(err)?.[1]) > 0, `a flush ends with the write that failed, its lines counted:\n${err}`);
  const later = Number(/later (\d+)/.exec(err)?.[1]);
  assert.ok(later >= 301 && later <= 303, `all 300 lines and the warning(s) about them are counted (${later})`);
});

test('exit with a backlog that stdout never takes: the exit flush gives up after its wait instead of hanging', async () => {
  const child = `
    const { processLogger } = await import(${JSON.stringify(path.join(ROOT, 'src/logging.ts'))});
    const { log } = processLogger('info', { bufferBytes: 64 * 1024 * 1024 });
    for (let i = 0; i < 20000; i++) log.info({ i, pad: 'x'.repeat(200) }, 'burst');
    process.exit(0);
  `;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', child], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // ~5 MB for a pipe of 64 KiB that is never read.
  proc.stdout.pause();
  const killer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
  const started = Date.now();
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  clearTimeout(killer);
  assert.equal(code, 0, 'exits by itself, with the code it was given');
  assert.ok(Date.now() - started < 15_000, `exited after ${Date.now() - started} ms`);
  proc.stdout.destroy();
});
