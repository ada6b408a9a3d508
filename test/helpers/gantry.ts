import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import Docker from 'dockerode';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { request } from 'undici';
import { type AppOverrides, buildApp } from '../../src/app.js';
import { hashToken, type Scope } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import type { Job } from '../../src/model/job.js';
import { isTerminal } from '../../src/model/states.js';

export const TEST_IMAGE = 'local/busybox:latest';
export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';
export const ROOT = path.resolve(import.meta.dirname, '..', '..');
const MAIN_SOCKET = process.env.GANTRY_DOCKER_SOCKET ?? '/var/run/docker.sock';
export const docker = new Docker({ socketPath: MAIN_SOCKET });

/** A fresh folder, readable by jobs (which run as a non-root user) when a test mounts it. */
export function tempDir(prefix = 'gantry-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** Writes a GANTRY_TOKENS_FILE (only the tokens' hashes, as an operator would) in a fresh temp dir; returns its path. */
export function tokensFile(entries: { owner: string; scopes: Scope[]; token: string }[]): string {
  const file = path.join(tempDir(), 'tokens.json');
  fs.writeFileSync(file, JSON.stringify(entries.map((e) => ({ owner: e.owner, scopes: e.scopes, sha256: hashToken(e.token) }))));
  return file;
}

/**
 * Environment for a test Gantry: temp data dir, known admin token, no GPUs,
 * quiet logs, and run folders of its own in the data dir: never the host's
 * /run/gantry, which another Gantry (another user's, as in compose) may own.
 */
export function testEnv(dataDir: string, env: Record<string, string> = {}): Record<string, string> {
  return {
    GANTRY_DATA_DIR: dataDir,
    GANTRY_SECRETS_RUN_DIR: path.join(dataDir, 'secret-run'),
    GANTRY_NOTICE_DIR: path.join(dataDir, 'notices'),
    GANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
    GANTRY_HOST: '127.0.0.1',
    GANTRY_PORT: '0',
    GANTRY_GPUS: 'none',
    GANTRY_LOG_LEVEL: process.env.GANTRY_TEST_LOG_LEVEL ?? 'error',
    GANTRY_STOP_GRACE_SECONDS: '2',
    ...env,
  };
}

export interface Client {
  url: string;
  call<T = unknown>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH',
    p: string,
    opts?: { body?: unknown; headers?: Record<string, string>; token?: string | null },
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: T; text: string }>;
  submit(spec: Record<string, unknown>, headers?: Record<string, string>): Promise<Job>;
  job(id: string): Promise<Job>;
  waitFor(id: string, pred?: (j: Job) => boolean, timeoutMs?: number): Promise<Job>;
}

export function client(url: string, token: string | null = ADMIN_TOKEN): Client {
  const c: Client = {
    url,
    async call(method, p, opts = {}) {
      const tok = opts.token === undefined ? token : opts.token;
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      if (tok) headers.authorization = `Bearer ${tok}`;
      let body: string | undefined;
      if (opts.body !== undefined) {
        body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await request(url + p, { method, headers, body });
      const text = await res.body.text();
      let parsed: unknown = text;
      const ct = String(res.headers['content-type'] ?? '');
      if (ct.includes('json') && text) parsed = JSON.parse(text);
      return { status: res.statusCode, headers: res.headers, body: parsed as never, text };
    },
    async submit(spec, headers) {
      const r = await c.call<Job>('POST', '/v1/jobs', { body: spec, ...(headers ? { headers } : {}) });
      if (r.status !== 201 && r.status !== 200) throw new Error(`submit failed: ${r.status} ${r.text}`);
      return r.body;
    },
    async job(id) {
      const r = await c.call<Job>('GET', `/v1/jobs/${id}`);
      if (r.status !== 200) throw new Error(`get ${id}: ${r.status} ${r.text}`);
      return r.body;
    },
    async waitFor(id, pred = (j) => isTerminal(j.state), timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const j = await c.job(id);
        if (pred(j)) return j;
        if (Date.now() > deadline) throw new Error(`timed out waiting for job ${id}; last state ${j.state} (${j.reason})`);
        await sleep(100);
      }
    },
  };
  return c;
}

/** Gantry processes of this test file that may still run. */
const children = new Set<ChildProcess>();
/** Data dirs of the Gantrys this test file started on the main engine (whose jobs' containers it may have left there). */
const mainEngineDataDirs = new Set<string>();

// A stopped Gantry leaves its jobs' containers running, by design (a restart
// re-adopts them), and a test that fails stops nothing. So after the last
// test of a file, pass or fail: every Gantry process it started is killed,
// then every container of a job in one of their stores is removed. Only
// those: the engine is shared with whatever else runs on the host.
after(async () => {
  await Promise.all([...children].map(killChild));
  await removeContainersOfJobsIn(mainEngineDataDirs);
});
// The test process dying without its after hooks: at least no Gantry outlives it.
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
}

/** Remembers a data dir whose Gantry drives the main engine, `docker` (a private engine's containers go with that engine). */
function onMainEngine(dataDir: string, env: Record<string, string>): void {
  if (env.GANTRY_DOCKER_SOCKET === undefined || env.GANTRY_DOCKER_SOCKET === MAIN_SOCKET) mainEngineDataDirs.add(dataDir);
}

/** The ids of the jobs in the SQLite store of each data dir (none for a dir with no store: PostgreSQL, or never started). */
function jobIdsIn(dataDirs: Iterable<string>): Set<string> {
  const ids = new Set<string>();
  for (const dir of dataDirs) {
    const file = path.join(dir, 'gantry.db');
    if (!fs.existsSync(file)) continue;
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      for (const row of db.prepare('SELECT id FROM jobs').all() as { id: string }[]) ids.add(row.id);
    } finally {
      db.close();
    }
  }
  return ids;
}

/** Force-removes every Gantry-labelled container on the main engine whose job is in one of these data dirs' stores. */
export async function removeContainersOfJobsIn(dataDirs: Iterable<string>): Promise<void> {
  const ids = jobIdsIn(dataDirs);
  if (ids.size === 0) return;
  const managed = await docker.listContainers({ all: true, filters: { label: ['dev.gantry.managed=true'] } });
  for (const c of managed.filter((x) => ids.has(x.Labels['dev.gantry.job-id'] ?? ''))) {
    // 404 and 409 ("removal already in progress"): it is going or gone.
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404 && err.statusCode !== 409) throw err;
      });
  }
}

export interface InProcessGantry extends Client {
  app: FastifyInstance;
  dataDir: string;
}

/** Starts Gantry in this process on an ephemeral loopback port; closed after the test. */
export async function startGantry(
  t: TestContext | null,
  env: Record<string, string> = {},
  overrides: AppOverrides = {},
  dataDir = tempDir(),
): Promise<InProcessGantry> {
  const config = loadConfig(testEnv(dataDir, env));
  onMainEngine(dataDir, env);
  const app = await buildApp(config, { logger: pino({ level: config.logLevel }), ...overrides });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  const url = `http://127.0.0.1:${addr.port}`;
  t?.after(async () => {
    await app.close();
  });
  return Object.assign(client(url), { app, dataDir });
}

export interface ChildGantry extends Client {
  proc: ChildProcess;
  dataDir: string;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts Gantry as its own process (for SIGKILL / SIGTERM tests). With
 * `hostname`, it runs in a UTS namespace of its own under that hostname
 * (`unshare --uts`, root only), as a recreated container would.
 */
export async function spawnGantry(
  dataDir: string,
  env: Record<string, string> = {},
  port?: number,
  { hostname }: { hostname?: string } = {},
): Promise<ChildGantry> {
  const p = port ?? (await freePort());
  const gantry = [process.execPath, '--import', 'tsx', path.join(ROOT, 'src/main.ts')];
  // `exec` keeps one process: a signal to it reaches Gantry itself.
  const [command, ...args] =
    hostname === undefined ? gantry : ['unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', hostname, ...gantry];
  const proc = spawn(command!, args, {
    cwd: ROOT,
    env: { ...process.env, ...testEnv(dataDir, { GANTRY_PORT: String(p), ...env }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  onMainEngine(dataDir, env);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const url = `http://127.0.0.1:${p}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gantry exited early (${proc.exitCode}):\n${out}`);
    try {
      const r = await request(`${url}/healthz`);
      await r.body.text();
      if (r.statusCode === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await killChild(proc);
      throw new Error(`gantry did not come up:\n${out}`);
    }
    await sleep(100);
  }
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return Object.assign(client(url), {
    proc,
    dataDir,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  });
}

export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a !== 'string' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Containers Gantry created for a job (by label), including stopped ones. */
export async function containersOf(jobId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`dev.gantry.job-id=${jobId}`] } });
}

/** Every container carrying Gantry's label (to prove refusals create none). */
export async function gantryContainerCount(): Promise<number> {
  return (await docker.listContainers({ all: true, filters: { label: ['dev.gantry.managed=true'] } })).length;
}

/**
 * Resolves once the job has no container left. Gantry records a job's end
 * before it removes the container (so a crash in between loses nothing), so
 * removal may still be in progress when the terminal state is visible.
 */
export async function containersGone(jobId: string, timeoutMs = 15_000): Promise<Docker.ContainerInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await containersOf(jobId);
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(100);
  }
}
