import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type PrivateDockerd, startDockerd } from './dockerd.js';
import { type ChildGantry, spawnGantry, tempDir } from './gantry.js';
import { createDatabase, startPostgres } from './postgres.js';
import { type FaultyLink, startToxiproxy } from './toxiproxy.js';

export interface FleetNodeOptions {
  name: string;
  labels?: Record<string, string>;
  /** Static GPUs of the node (memory in MiB each); none when absent. */
  gpusMiB?: number[];
  /** Reach the database through a Toxiproxy link of its own (FleetNode.link), so a test can cut, freeze or slow it. */
  proxied?: boolean;
}

export interface FleetNode {
  name: string;
  dockerd: PrivateDockerd;
  /** The node's Gantry now (a new one after restart()). */
  gantry: ChildGantry;
  /** The node's own link to the database when it was started `proxied`, else null. */
  link: FaultyLink | null;
  /** Its environment, so a test can start it again as it was. */
  env: Record<string, string>;
  /** Starts the node's Gantry again (after a kill) on the same port, data dir and engine. */
  restart(): Promise<ChildGantry>;
}

export interface Fleet {
  databaseUrl: string;
  pg: Awaited<ReturnType<typeof startPostgres>>;
  nodes: FleetNode[];
  node(name: string): FleetNode;
}

/** The GPU UUIDs a fleet node of this name is given. */
export function gpuUuid(node: string, i: number): string {
  return `GPU-${node}-0000-0000-${String(i).padStart(4, '0')}`;
}

/**
 * A fleet on one machine: one throwaway PostgreSQL, and per node its own
 * Docker engine and its own Gantry process (GANTRY_DATABASE_URL shared,
 * GANTRY_NODE_NAME, labels, a static GPU inventory injected by the `env`
 * driver), each on its own loopback port; a `proxied` node reaches the
 * database through a Toxiproxy link of its own. Everything is torn down
 * after the test, Gantrys first, then engines, then the database.
 */
export async function startFleet(
  t: TestContext,
  o: { nodes: FleetNodeOptions[]; leaseSeconds: number; env?: Record<string, string> },
): Promise<Fleet> {
  const pg = await startPostgres(null);
  const engines: PrivateDockerd[] = [];
  const nodes: FleetNode[] = [];
  // Everything that started is torn down, also when a later node failed to start.
  t.after(async () => {
    // GANTRY_FLEET_LOGS=dir keeps each node's own log, to see what a node did in a failed test.
    const keep = process.env.GANTRY_FLEET_LOGS;
    if (keep) for (const n of nodes) fs.writeFileSync(path.join(keep, `${n.name}.log`), n.gantry.output());
    for (const n of nodes) await n.gantry.stop('SIGKILL').catch(() => undefined);
    await Promise.all(engines.map((e) => e.destroy()));
    await pg.destroy();
  });
  const databaseUrl = await createDatabase(pg.url, 'fleet');
  const toxiproxy = o.nodes.some((n) => n.proxied) ? await startToxiproxy(t) : null;
  // All settled before any failure is thrown: an engine still starting then would outlive the teardown.
  const starts = await Promise.allSettled(o.nodes.map(() => startDockerd(null)));
  for (const s of starts) if (s.status === 'fulfilled') engines.push(s.value);
  const failed = starts.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  for (const [i, spec] of o.nodes.entries()) {
    const dockerd = engines[i]!;
    const link = spec.proxied ? await toxiproxy!.link(`db-${spec.name}`, databaseUrl) : null;
    const env: Record<string, string> = {
      GANTRY_DATABASE_URL: link?.url ?? databaseUrl,
      GANTRY_NODE_NAME: spec.name,
      GANTRY_NODE_LABELS: Object.entries(spec.labels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
      GANTRY_NODE_LEASE_SECONDS: String(o.leaseSeconds),
      GANTRY_DOCKER_SOCKET: dockerd.socket,
      GANTRY_GPUS: spec.gpusMiB?.length ? spec.gpusMiB.map((mib, g) => `${gpuUuid(spec.name, g)}:${mib}`).join(',') : 'none',
      GANTRY_GPU_DRIVER: 'env',
      ...(o.env ?? {}),
    };
    const dataDir = tempDir(`gantry-${spec.name}-`);
    const node: FleetNode = {
      name: spec.name,
      dockerd,
      link,
      env,
      gantry: await spawnGantry(dataDir, env),
      async restart() {
        const port = Number(new URL(node.gantry.url).port);
        node.gantry = await spawnGantry(dataDir, env, port);
        return node.gantry;
      },
    };
    nodes.push(node);
  }
  return {
    databaseUrl,
    pg,
    nodes,
    node: (name) => {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name}`);
      return n;
    },
  };
}

/** Polls until fn returns a value other than undefined, or fails after timeoutMs with what it last saw. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(100);
  }
}
