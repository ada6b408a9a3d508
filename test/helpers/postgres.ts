import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

/** A throwaway PostgreSQL cluster of a test file; each test takes a fresh database on it (createDatabase). */
export interface TestPostgres {
  /** The `gantry` database: postgres://gantry@127.0.0.1:PORT/gantry. */
  url: string;
  port: number;
  /** The directory holding the cluster (data, socket, log); destroy() removes it. */
  dataDir: string;
  /** A fast shutdown (every connection is told 57P01 and closed), then start again on the same port. */
  restart(): Promise<void>;
  /** A fast shutdown; start() brings it back. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** SIGKILL to the postmaster: the server vanishes without a word (start() recovers it). */
  kill(): void;
  /** Stops it at once and removes its directory. */
  destroy(): Promise<void>;
}

/** The newest PostgreSQL's server binaries: Debian's /usr/lib/postgresql/N/bin, else `pg_config --bindir`. */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs
        .readdirSync(root)
        .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  if (versions[0] !== undefined) return path.join(root, versions[0], 'bin');
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    if (fs.existsSync(path.join(dir, 'initdb'))) return dir;
  } catch {
    // no pg_config: fall through
  }
  throw new Error('PostgreSQL server binaries not found (initdb): install the postgresql package (scripts/setup-host.sh --test)');
}

/** A port free on 127.0.0.1 now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** PostgreSQL refuses to run as root: as root, its tools run as the `postgres` user. */
const asRoot = process.getuid?.() === 0;

function command(bin: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
}

/** Clusters still running when the process exits are killed and removed (a test that crashed before its destroy()). */
const live = new Set<TestPostgres>();
process.once('exit', () => {
  for (const p of live) {
    p.kill();
    try {
      fs.rmSync(p.dataDir, { recursive: true, force: true });
    } catch {
      // a backend still writing as it exits: the directory stays in the temp dir
    }
  }
});

/**
 * Starts a throwaway PostgreSQL: a new cluster in a temporary directory,
 * trusting every local connection, listening on 127.0.0.1 only, on a free
 * port, with fsync off (nothing in it needs to survive a power loss). With
 * a TestContext, destroy() runs after the test.
 */
export async function startPostgres(t?: TestContext | null): Promise<TestPostgres> {
  const bin = binDir();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-pg-'));
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    fs.chownSync(dataDir, uid, gid);
  }
  const data = path.join(dataDir, 'data');
  const logFile = path.join(dataDir, 'postgres.log');
  const tool = async (name: string, args: string[]) => {
    const [file, argv] = command(path.join(bin, name), args);
    try {
      await run(file, argv, { encoding: 'utf8' });
    } catch (err) {
      const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-4000) : '';
      const e = err as { stderr?: string; message: string };
      throw new Error(`${name} ${args.join(' ')} failed: ${e.stderr || e.message}\n${log}`);
    }
  };

  await tool('initdb', ['-D', data, '-A', 'trust', '-U', 'gantry', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  fs.appendFileSync(
    path.join(data, 'postgresql.conf'),
    [
      `listen_addresses = '127.0.0.1'`,
      `port = ${port}`,
      `unix_socket_directories = '${dataDir}'`,
      'fsync = off',
      'full_page_writes = off',
      'max_connections = 200',
      '',
    ].join('\n'),
  );
  let running = false;
  const start = async () => {
    // After kill(), the old postmaster's backends take a moment to notice and
    // exit; until they have, the new one refuses to start (its lock file and
    // shared memory are still in use).
    for (let tries = 1; ; tries++) {
      try {
        await tool('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', 'start']);
        break;
      } catch (err) {
        if (tries >= 50 || !/another server might be running|lock file|shared memory/.test((err as Error).message)) throw err;
        await sleep(200);
      }
    }
    running = true;
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    await tool('pg_ctl', ['-D', data, '-w', '-t', '60', '-m', mode, 'stop']);
    running = false;
  };
  let destroyed = false;
  const cluster: TestPostgres = {
    url: `postgres://gantry@127.0.0.1:${port}/gantry`,
    port,
    dataDir,
    async restart() {
      await stop();
      await start();
    },
    stop: () => stop(),
    start,
    kill() {
      const pidFile = path.join(data, 'postmaster.pid');
      if (!fs.existsSync(pidFile)) return;
      const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      running = false;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      live.delete(cluster);
      if (running) await stop('immediate').catch(() => cluster.kill());
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  live.add(cluster);
  t?.after(() => cluster.destroy());
  try {
    await start();
    const admin = new pg.Client({ connectionString: `postgres://gantry@127.0.0.1:${port}/postgres` });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE gantry');
    } finally {
      await admin.end();
    }
  } catch (err) {
    // A cluster that started but is not ready to hand out is not left running.
    cluster.kill();
    await cluster.destroy();
    throw err;
  }
  return cluster;
}

/** Creates database `name` on the cluster of `url` and returns its URL. */
export async function createDatabase(url: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs one statement on a connection of its own, outside any store (as another program, or an older Gantry, would). */
export async function queryOnce(url: string, text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

/**
 * One throwaway cluster for a test file, started before its tests and
 * destroyed after them (call at the file's top level), and a fresh database
 * on it per call of `freshDatabase`.
 */
export function clusterForFile(): { cluster(): TestPostgres; freshDatabase(): Promise<string> } {
  let cluster: TestPostgres | undefined;
  let databases = 0;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.destroy());
  const started = () => {
    if (!cluster) throw new Error('the cluster starts before the tests');
    return cluster;
  };
  return {
    cluster: started,
    freshDatabase: () => createDatabase(started().url, `t${process.pid}_${++databases}`),
  };
}
