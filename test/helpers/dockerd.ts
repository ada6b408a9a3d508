import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';

/** The image the tests run; scripts/build-test-image.sh builds it on the main engine. */
export const TEST_IMAGE = 'local/busybox:latest';
/**
 * The main engine, where the test image is copied from. Its own client, not
 * gantry.ts's: this helper is about engines and loads without the app.
 */
export const mainDocker = new Docker({ socketPath: process.env.GANTRY_DOCKER_SOCKET ?? '/var/run/docker.sock' });

export interface DockerdExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface PrivateDockerd {
  /** The directory that holds all of this engine (socket, data and exec roots, log); destroy() removes it. */
  dir: string;
  /** Its API socket: the GANTRY_DOCKER_SOCKET of a Gantry that should use this engine. */
  socket: string;
  dataRoot: string;
  execRoot: string;
  /** A client of this engine. It connects per request, so it stays valid across stop() and restart(). */
  docker: Docker;
  /** The dockerd process while it runs, else null. */
  readonly pid: number | null;
  /**
   * Signals dockerd (SIGTERM: its orderly shutdown, which stops the containers
   * unless live-restore is on) and resolves once it has exited; SIGKILL follows
   * if it has not within a minute.
   */
  stop(signal?: NodeJS.Signals): Promise<DockerdExit>;
  /**
   * SIGKILL: the engine vanishes without any shutdown. Its containers run on;
   * once it is back, it kills them unless live-restore is on.
   */
  kill(): Promise<DockerdExit>;
  /** Stops it if it runs (SIGTERM), then starts it again on the same socket and data root; resolves once it answers. */
  restart(): Promise<void>;
  /** Removes every container, stops the daemon, unmounts what is left under its directory and removes it. Idempotent. */
  destroy(): Promise<void>;
  /** What dockerd has logged so far, for failure messages. */
  log(): string;
}

const READY_MS = 60_000;
const EXIT_MS = 60_000;
const CONTAINERD_EXIT_MS = 15_000;

/**
 * Engines not destroyed yet. When the process exits with some still here (a
 * test that crashed before its destroy()), each is shut down there and then,
 * synchronously: SIGTERM, which stops its containers (without live-restore),
 * a wait for dockerd to exit, then its mounts and directory are removed.
 */
const live = new Map<string, () => number | null>();
process.once('exit', () => {
  for (const [dir, pid] of live) {
    const p = pid();
    if (p !== null) {
      process.kill(p, 'SIGTERM');
      spawnSync('timeout', [String(EXIT_MS / 1000), 'tail', `--pid=${p}`, '-f', '/dev/null']);
    }
    for (const m of mountsUnder(dir).reverse()) spawnSync('umount', ['-l', m]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Starts a Docker engine of its own beside the main one: its own socket, data
 * root, exec root (where it starts its own containerd), pidfile and an empty
 * config file (so /etc/docker/daemon.json cannot change it), with bridge,
 * iptables and masquerading off like the main engine. Resolves once it answers
 * _ping and holds the test image, copied from the main engine.
 *
 * Everything lives in one directory under /tmp with a short name: containerd's
 * socket is made under the exec root, and a unix socket path must fit in 108 bytes.
 *
 * With t, destroy() runs in t.after; without, the caller must call it.
 * With liveRestore, --live-restore is set: running containers outlive the daemon.
 */
export async function startDockerd(t: TestContext | null, opts: { liveRestore?: boolean } = {}): Promise<PrivateDockerd> {
  const dir = fs.mkdtempSync('/tmp/gd-');
  const socket = path.join(dir, 'docker.sock');
  const dataRoot = path.join(dir, 'data');
  const execRoot = path.join(dir, 'exec');
  const logFile = path.join(dir, 'dockerd.log');
  const configFile = path.join(dir, 'daemon.json');
  fs.writeFileSync(configFile, '{}\n');
  const args = [
    '-H',
    `unix://${socket}`,
    '--data-root',
    dataRoot,
    '--exec-root',
    execRoot,
    '--pidfile',
    path.join(dir, 'docker.pid'),
    '--config-file',
    configFile,
    '--bridge=none',
    '--iptables=false',
    '--ip-masq=false',
    ...(opts.liveRestore ? ['--live-restore'] : []),
  ];
  const client = new Docker({ socketPath: socket });
  let proc: ChildProcess | null = null;
  let exited: Promise<DockerdExit> = Promise.resolve({ code: null, signal: null });
  let answered = false;
  let destroyed = false;

  // A spawn that failed (no dockerd binary) has no pid and never exits.
  const running = () => proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null;
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');
  const logTail = () => log().split('\n').slice(-30).join('\n');

  async function start(): Promise<void> {
    dropDeadContainerdPidfile(execRoot);
    const out = fs.openSync(logFile, 'a');
    const p = spawn('dockerd', args, { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    proc = p;
    let spawnError: Error | undefined;
    exited = new Promise((resolve) => {
      p.once('exit', (code, signal) => resolve({ code, signal }));
      p.once('error', (err) => {
        spawnError = err;
        resolve({ code: null, signal: null });
      });
    });
    const deadline = Date.now() + READY_MS;
    for (;;) {
      await sleep(100);
      if (!running()) {
        const why = spawnError ? `could not be started: ${spawnError.message}` : `exited (${JSON.stringify(await exited)})`;
        throw new Error(`dockerd ${why}:\n${logTail()}`);
      }
      try {
        await client.ping();
        answered = true;
        return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`dockerd did not answer _ping within ${READY_MS} ms:\n${logTail()}`);
    }
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<DockerdExit> {
    if (!running()) return exited;
    proc!.kill(signal);
    // Unref'd: the pending deadline must not hold the test process open once dockerd has exited.
    let exit = await Promise.race([exited, sleep(EXIT_MS, null, { ref: false })]);
    if (!exit) {
      proc!.kill('SIGKILL');
      exit = await exited;
    }
    await containerdDown(execRoot);
    return exit;
  }

  async function destroy(): Promise<void> {
    if (destroyed) return;
    destroyed = true;
    live.delete(dir);
    try {
      if (answered) {
        // Containers that a stopped or killed engine left running can be removed only through the engine.
        if (!running()) await start();
        // 404 and 409 ("removal already in progress"): whoever uses the engine removed it first.
        for (const c of await client.listContainers({ all: true })) {
          await client
            .getContainer(c.Id)
            .remove({ force: true })
            .catch((err: { statusCode?: number }) => {
              if (err.statusCode !== 404 && err.statusCode !== 409) throw err;
            });
        }
      }
      await stop();
    } finally {
      for (const m of mountsUnder(dir).reverse()) execFileSync('umount', ['-l', m]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  const d: PrivateDockerd = {
    dir,
    socket,
    dataRoot,
    execRoot,
    docker: client,
    get pid() {
      return running() ? (proc!.pid ?? null) : null;
    },
    stop,
    kill: () => stop('SIGKILL'),
    async restart() {
      await stop();
      await start();
    },
    destroy,
    log,
  };
  live.set(dir, () => d.pid);
  t?.after(destroy);
  try {
    await start();
    await copyTestImage(client);
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }
  return d;
}

/**
 * dockerd reuses the containerd named in its pidfile while that process exists,
 * and waits for good on one that is a zombie. After a SIGKILL of dockerd its
 * containerd dies with it (a parent-death signal) but stays a zombie until init
 * reaps it, which on these machines takes a second or more. A pidfile that names a dead or
 * zombie process is removed, so that dockerd starts a new containerd.
 */
function dropDeadContainerdPidfile(execRoot: string): void {
  const file = path.join(execRoot, 'containerd', 'containerd.pid');
  if (!fs.existsSync(file)) return;
  const state = processState(fs.readFileSync(file, 'utf8').trim());
  if (state === undefined || state === 'Z') fs.rmSync(file);
}

/**
 * Waits (CONTAINERD_EXIT_MS at most) until the containerd that a dockerd
 * started has exited or is a zombie. Killed with its dockerd, it takes a
 * moment to die on a busy machine; a dockerd started meanwhile finds its pid
 * alive, adopts it, then waits for good on a socket nobody will answer.
 */
async function containerdDown(execRoot: string): Promise<void> {
  const file = path.join(execRoot, 'containerd', 'containerd.pid');
  if (!fs.existsSync(file)) return;
  const pid = fs.readFileSync(file, 'utf8').trim();
  const deadline = Date.now() + CONTAINERD_EXIT_MS;
  for (let state = processState(pid); state !== undefined && state !== 'Z' && Date.now() < deadline; state = processState(pid)) {
    await sleep(50);
  }
}

/** A process's state letter (R, S, Z, …) from /proc; undefined when there is no such process. */
function processState(pid: string): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2];
  } catch {
    return undefined;
  }
}

/** Copies the test image from the main engine (no registry is reachable, so it cannot be pulled). */
async function copyTestImage(to: Docker): Promise<void> {
  const tar = await mainDocker.getImage(TEST_IMAGE).get();
  const res = await to.loadImage(tar, { quiet: true });
  const out = await new Promise<{ error?: string }[]>((resolve, reject) =>
    to.modem.followProgress(res, (err: Error | null, o: { error?: string }[]) => (err ? reject(err) : resolve(o))),
  );
  const failed = out.find((o) => o.error);
  if (failed) throw new Error(`loading ${TEST_IMAGE}: ${failed.error}`);
  await to.getImage(TEST_IMAGE).inspect();
}

/** Mount points at or below dir, parents before children (from this process's mountinfo). */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => m !== undefined)
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => a.length - b.length);
}
