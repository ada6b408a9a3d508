import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { request } from 'undici';
import { hashToken } from '../../src/auth/tokens.js';
import { say, sleep } from './util.js';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BENCH_TOKEN = 'gty_bench-token-0123456789abcdef0123456789abcdef';
/** The compiled Gantry to run: dist/ (built by npm run bench), or BENCH_DIST (e.g. a build of another commit). */
export const DIST = path.resolve(process.env.BENCH_DIST ?? path.join(ROOT, 'dist'));
export const IMAGE = process.env.BENCH_IMAGE ?? 'local/busybox:latest';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a !== 'string' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Reads a field of /proc/PID/status in KiB (VmRSS, VmHWM). */
export function procKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** User + system CPU seconds a process has used so far. */
export function procCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** Resets VmHWM (peak RSS) of a process: "5" to clear_refs (Linux ≥ 4.0, needs permission on the process). */
export function resetPeak(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Samples RSS every `everyMs`, so a peak is seen even where clear_refs is refused. */
export class RssSampler {
  private timer: NodeJS.Timeout;
  peakKiB = 0;
  constructor(
    private readonly pid: number,
    everyMs = 50,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }
  private sample(): void {
    try {
      this.peakKiB = Math.max(this.peakKiB, procKiB(this.pid, 'VmRSS'));
    } catch {
      // process gone
    }
  }
  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peakKiB;
  }
}

/**
 * Where Gantry's stdout goes: a pipe read by its own process (`cat` into a
 * file), as journald or Docker's log driver would read it. When the bench
 * process read the pipe itself, the load generator also parsed ~2.5 MB/s of
 * Gantry's request log, which only the Gantry target paid for (in CPU and
 * in its latencies); the bare server logs nothing.
 */
export function stdoutSink(file: string): { stdin: Writable; tail(): string; stop(): Promise<void> } {
  const cat = spawn('sh', ['-c', 'exec cat > "$0"', file], { stdio: ['pipe', 'ignore', 'inherit'] });
  const closed = new Promise<void>((resolve) => cat.once('exit', () => resolve()));
  return {
    stdin: cat.stdin!,
    tail() {
      try {
        const fd = fs.openSync(file, 'r');
        try {
          const size = fs.fstatSync(fd).size;
          const buf = Buffer.alloc(Math.min(size, 8192));
          fs.readSync(fd, buf, 0, buf.length, size - buf.length);
          return buf.toString();
        } finally {
          fs.closeSync(fd);
        }
      } catch {
        return '';
      }
    },
    async stop() {
      cat.stdin!.end(); // the writer (Gantry) has exited: cat sees EOF
      await closed;
    },
  };
}

export interface GantryProc {
  url: string;
  pid: number;
  proc: ChildProcess;
  dataDir: string;
  env: Record<string, string>;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Runs Gantry from the compiled JS (npm run build → dist/src/main.js, or
 * another compiled tree), as in production: no tsx, its default log level.
 * BENCH_CPU_PROF=dir adds --cpu-prof.
 */
export async function startGantry(dataDir: string, env: Record<string, string>, label: string, dist = DIST): Promise<GantryProc> {
  const main = path.join(dist, 'src/main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first (npm run bench does)`);
  fs.mkdirSync(dataDir, { recursive: true });
  const tokensFile = path.join(dataDir, 'tokens.json');
  fs.writeFileSync(tokensFile, JSON.stringify([{ owner: 'bench', scopes: ['submit', 'read', 'cancel'], sha256: hashToken(BENCH_TOKEN) }]));
  const port = await freePort();
  const fullEnv: Record<string, string> = {
    GANTRY_DATA_DIR: dataDir,
    // Run folders of its own, never the host's /run/gantry (another user's Gantry may own it).
    GANTRY_SECRETS_RUN_DIR: path.join(dataDir, 'secret-run'),
    GANTRY_NOTICE_DIR: path.join(dataDir, 'notices'),
    GANTRY_TOKENS_FILE: tokensFile,
    GANTRY_HOST: '127.0.0.1',
    GANTRY_PORT: String(port),
    GANTRY_GPUS: 'none',
    // Gantry's default level (info: one line per request) unless
    // BENCH_LOG_LEVEL says otherwise: what it costs in production is measured.
    ...(process.env.BENCH_LOG_LEVEL ? { GANTRY_LOG_LEVEL: process.env.BENCH_LOG_LEVEL } : {}),
    GANTRY_MAX_RUNNING: '32',
    GANTRY_STOP_GRACE_SECONDS: '1',
    GANTRY_METRICS_PORT: String(await freePort()),
    ...env,
  };
  // BENCH_NODE_FLAGS: extra node flags for Gantry (experiments, e.g. V8 heap sizes).
  const args: string[] = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const profDir = process.env.BENCH_CPU_PROF;
  if (profDir) {
    fs.mkdirSync(profDir, { recursive: true });
    args.push('--cpu-prof', `--cpu-prof-dir=${path.resolve(profDir)}`, `--cpu-prof-name=gantry-${label}-${Date.now()}.cpuprofile`);
  }
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GANTRY_') && v !== undefined) childEnv[k] = v;
  const sink = stdoutSink(path.join(dataDir, 'gantry.stdout.log'));
  const proc = spawn(process.execPath, [...args, main], {
    cwd: ROOT,
    env: { ...childEnv, ...fullEnv, NODE_ENV: 'production' },
    stdio: ['ignore', sink.stdin, 'pipe'],
  });
  // stderr (rare: fatal start-up errors) is kept for error messages, with
  // the end of the stdout log.
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8192)));
  const out = () => `${sink.tail()}${stderr}`;
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gantry (${label}) exited early (${proc.exitCode}):\n${out()}`);
    try {
      const r = await request(`${url}/healthz`);
      await r.body.text();
      if (r.statusCode === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gantry (${label}) did not come up:\n${out()}`);
    await sleep(100);
  }
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  say(`gantry (${label}) up: pid ${proc.pid}, ${url}, driver ${fullEnv.GANTRY_LOG_DRIVER ?? 'default'}`);
  return {
    url,
    pid: proc.pid!,
    proc,
    dataDir,
    env: fullEnv,
    output: out,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
      await sink.stop();
    },
  };
}
