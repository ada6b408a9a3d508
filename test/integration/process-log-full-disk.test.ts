// Gantry's stdout redirected to a file on a filesystem that fills up: every
// write of the process log fails with ENOSPC. The rule (src/logging.ts): Gantry
// keeps serving, counts the lines it cannot write, writes again once there is
// space, and still shuts down cleanly; it never stops listening or hangs.
// A real tmpfs, so the kernel's own ENOSPC (and its short writes into a
// file's last page) are what Gantry meets.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { client, freePort, ROOT, tempDir, testEnv } from '../helpers/gantry.js';
import { mountSmallFs, type SmallFs } from '../helpers/small-fs.js';

interface Line {
  level: number;
  msg: string;
  url?: string;
  droppedLinesTotal?: number;
  err?: { code?: string };
}

/** Gantry as its own process with stdout appended to `logFile`; killed, then the filesystem unmounted, after the test. */
async function gantryLoggingTo(t: TestContext, small: SmallFs, logFile: string) {
  const port = await freePort();
  const out = fs.openSync(logFile, 'a');
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...testEnv(tempDir(), { GANTRY_PORT: String(port), GANTRY_LOG_LEVEL: 'info' }) },
    stdio: ['ignore', out, 'pipe'],
  });
  fs.closeSync(out);
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    small.unmount();
  });
  const g = client(`http://127.0.0.1:${port}`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gantry exited early (${proc.exitCode}): ${stderr}`);
    if ((await healthz(g.url).catch(() => 0)) === 200) break;
    if (Date.now() > deadline) throw new Error(`gantry did not come up: ${stderr}`);
    await sleep(100);
  }
  return { ...g, proc, exited, stderr: () => stderr };
}

/** A stalled Gantry fails here (no answer within 10 s), not at the test's timeout. */
async function healthz(url: string, query = ''): Promise<number> {
  const r = await request(`${url}/healthz${query}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  await r.body.text();
  return r.statusCode;
}

/**
 * The file's lines, each of which must be whole JSON: a line torn by a short
 * write and continued by another line fails here. A last line without its
 * newline is left out: it is either still being written or, while the
 * filesystem is full, the line whose rest waits for space.
 */
function lines(logFile: string): Line[] {
  const text = fs.readFileSync(logFile, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
}

async function droppedLines(g: { call: ReturnType<typeof client>['call'] }): Promise<number> {
  const r = await g.call('GET', '/metrics');
  assert.equal(r.status, 200);
  const m = /^gantry_process_log_dropped_lines_total (\d+)$/m.exec(r.text);
  assert.ok(m, 'the metric is exposed');
  return Number(m[1]);
}

async function until<T>(what: string, probe: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)?.slice(-1000)}`);
    await sleep(100);
  }
}

test('stdout on a full filesystem: Gantry keeps answering and counts the lines it drops, logs again once there is space, and exits 0 on SIGTERM', async (t) => {
  const small = mountSmallFs(t, 1024 * 1024);
  if (!small) return;
  const logFile = path.join(small.dir, 'gantry.log');
  const g = await gantryLoggingTo(t, small, logFile);
  await until(
    'the start-up lines',
    () => lines(logFile),
    (l) => l.some((x) => x.msg.startsWith('Server listening')),
  );

  assert.equal(small.fill(0), 0, 'the filesystem is full');
  // ~2,000 request lines (~500 KB), none of which fits; 8 at a time.
  let issued = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (issued < 2000) {
        issued += 1;
        assert.equal(await healthz(g.url), 200);
      }
    }),
  );
  const dropped = await until(
    'dropped lines to be counted',
    () => droppedLines(g),
    (n) => n > 0,
  );
  assert.equal(g.proc.exitCode, null, 'Gantry is still running');
  assert.equal(await healthz(g.url), 200, 'and still answering');
  assert.ok(
    dropped <= issued + 100,
    `no more lines counted (${dropped}) than were logged (${issued} requests, the /metrics polls and a few reports)`,
  );

  small.free();
  const probe = `?after-free=${Date.now()}`;
  await until(
    'a request logged after the space was freed',
    async () => {
      assert.equal(await healthz(g.url, probe), 200);
      return lines(logFile);
    },
    (l) => l.some((x) => x.msg === 'request' && x.url === `/healthz${probe}`),
  );
  // The warning for the drops reaches the file too, once there is space: a
  // report that is itself dropped is made again a second later.
  const report = await until(
    'the warning about the dropped lines',
    () => lines(logFile).find((x) => x.msg === 'stdout cannot be written (ENOSPC): log lines were dropped'),
    (l) => l !== undefined,
  );
  assert.equal(report!.level, 40);
  assert.equal(report!.err?.code, 'ENOSPC');
  assert.ok(report!.droppedLinesTotal! > 0, 'the warning says how many lines were lost in all');

  g.proc.kill('SIGTERM');
  assert.equal(await g.exited, 0, g.stderr());
  assert.ok(lines(logFile).some((x) => x.msg === 'shutting down; running containers are left running'));
  assert.ok(fs.readFileSync(logFile, 'utf8').endsWith('\n'), 'with space again, the line begun before the filesystem filled was completed');
});

test('SIGTERM while stdout is on a full filesystem: Gantry exits 0, promptly', async (t) => {
  const small = mountSmallFs(t, 1024 * 1024);
  if (!small) return;
  const logFile = path.join(small.dir, 'gantry.log');
  const g = await gantryLoggingTo(t, small, logFile);
  small.fill(0);
  for (let i = 0; i < 200; i++) assert.equal(await healthz(g.url), 200);
  await until(
    'dropped lines to be counted',
    () => droppedLines(g),
    (n) => n > 0,
  );
  const started = Date.now();
  g.proc.kill('SIGTERM');
  assert.equal(await g.exited, 0, g.stderr());
  assert.ok(Date.now() - started < 5000, `exited in ${Date.now() - started} ms`);
  lines(logFile); // every complete line is whole JSON
});
