/**
 * One simulated fleet node: Gantry built as src/main.ts builds it
 * (loadConfig, then buildApp, listening on loopback), with an in-memory
 * container runtime whose containers run by themselves instead of Docker.
 * Everything else (store, change feed, membership, scheduler, HTTP API) is
 * the real code, so the simulation measures what the fleet does to
 * PostgreSQL, whichever version of that code is built here.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type pino from 'pino';
import { buildApp } from '../../src/app.js';
import { hashToken } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import { FakeRuntime } from '../../test/helpers/fake-runtime.js';
import { BENCH_TOKEN } from './gantry.js';

/**
 * What a simulated container does, from its command:
 * - `sim-job LINES EVERY_MS`: writes LINES stdout lines, one every EVERY_MS, then exits 0;
 * - `sim-hold`: runs until it is stopped (a job holding its GPU for the whole run);
 * - anything else: exits 0 at once.
 */
export const SIM_JOB = 'sim-job';
export const SIM_HOLD = 'sim-hold';

/** A FakeRuntime whose containers play their command themselves once started. */
export class SimRuntime extends FakeRuntime {
  override async start(id: string): Promise<void> {
    await super.start(id);
    const c = this.containers.get(id);
    if (c?.state !== 'running') return;
    const [what, lines, everyMs] = c.spec.command;
    if (what === SIM_HOLD) return;
    if (what !== SIM_JOB) {
      setImmediate(() => this.exitIfRunning(id, 0));
      return;
    }
    const total = Number(lines);
    let written = 0;
    const timer = setInterval(() => {
      const now = this.containers.get(id);
      if (now?.state !== 'running') {
        clearInterval(timer);
        return;
      }
      if (written < total) {
        written++;
        this.write(id, `${new Date().toISOString()} sim line ${written} of ${total}\n`);
        return;
      }
      clearInterval(timer);
      this.exitIfRunning(id, 0);
    }, Number(everyMs));
  }

  private exitIfRunning(id: string, code: number): void {
    if (this.containers.get(id)?.state === 'running') this.exit(id, code);
  }
}

/** The settings every simulated node gets unless the environment's own GANTRY_* says otherwise. */
const SIM_DEFAULTS: Record<string, string> = {
  GANTRY_LOG_LEVEL: 'warn',
  GANTRY_GPU_DRIVER: 'env',
  // No nvidia-smi here: telemetry and health checks would only log failures.
  GANTRY_GPU_SAMPLE_SECONDS: '0',
  GANTRY_GPU_HEALTH_INTERVAL_SECONDS: '0',
  GANTRY_GPU_KERNEL_LOG: 'none',
  GANTRY_METRICS: 'token',
};

/** The GANTRY_* variables of this process's environment: the operator's settings for every simulated node. */
function gantryEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('GANTRY_') && !!e[1]));
}

/** The owner of the capped team's jobs, the team, and the owner's token (the correctness checks submit as it). */
export const SIM_TEAM_OWNER = 'sim-team';
export const SIM_TEAM = 'sim-capped';
export const SIM_TEAM_TOKEN = 'gty_sim-team-token-0123456789abcdef0123456789abcdef';

/** The tokens and quotas files every node of a cell reads. */
export interface SimNodeFiles {
  tokensFile: string;
  quotasFile: string;
}

/**
 * Writes the cell's tokens file (the capped team's owner; the admin token
 * comes from GANTRY_ADMIN_TOKEN) and quotas file: the team may hold
 * `teamGpus` GPUs at once and borrow none. Jobs of any other owner have no
 * limits.
 */
export function writeSimNodeFiles(root: string, teamGpus: number): SimNodeFiles {
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const files = { tokensFile: path.join(root, 'tokens.json'), quotasFile: path.join(root, 'quotas.json') };
  const tokens = [{ owner: SIM_TEAM_OWNER, scopes: ['submit', 'read', 'cancel'], sha256: hashToken(SIM_TEAM_TOKEN) }];
  fs.writeFileSync(files.tokensFile, JSON.stringify(tokens), { mode: 0o600 });
  fs.writeFileSync(files.quotasFile, JSON.stringify([{ name: SIM_TEAM, owners: [SIM_TEAM_OWNER], gpus: teamGpus, borrowGpus: 0 }]));
  return files;
}

export interface SimNode {
  name: string;
  url: string;
  app: FastifyInstance;
}

/**
 * Builds and starts node `name` on the database `databaseUrl` with one
 * fake GPU, its data dir under `root`. The environment's GANTRY_* settings
 * apply, except the node's identity, address, database, GPU, tokens and
 * quotas.
 */
export async function startSimNode(o: {
  name: string;
  databaseUrl: string;
  root: string;
  files: SimNodeFiles;
  log: pino.Logger;
}): Promise<SimNode> {
  const dataDir = path.join(o.root, o.name);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const config = loadConfig({
    ...SIM_DEFAULTS,
    ...gantryEnv(),
    GANTRY_ADMIN_TOKEN: BENCH_TOKEN,
    GANTRY_DATABASE_URL: o.databaseUrl,
    GANTRY_NODE_NAME: o.name,
    GANTRY_DATA_DIR: dataDir,
    GANTRY_HOST: '127.0.0.1',
    GANTRY_PORT: '0',
    GANTRY_TOKENS_FILE: o.files.tokensFile,
    GANTRY_QUOTAS_FILE: o.files.quotasFile,
    GANTRY_GPUS: `GPU-sim-${o.name}-0000-0000-000000000000:81920`,
    GANTRY_SECRETS_RUN_DIR: path.join(dataDir, 'secrets'),
    GANTRY_NOTICE_DIR: path.join(dataDir, 'notices'),
  });
  const app = await buildApp(config, { runtime: new SimRuntime(), logger: o.log.child({ node: o.name }) });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return { name: o.name, url: address, app };
}
