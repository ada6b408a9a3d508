import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import pino from 'pino';
import type { Principal } from '../../src/auth/tokens.js';
import { type Config, loadConfig } from '../../src/config.js';
import { buildDomain, newQueue } from '../../src/domain.js';
import { NodeMembership } from '../../src/fleet/membership.js';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import { JobEventHub } from '../../src/jobs/events.js';
import type { JobService } from '../../src/jobs/service.js';
import type { Job, JobSpec } from '../../src/model/job.js';
import { isTerminal } from '../../src/model/states.js';
import type { NodeRuns } from '../../src/runner/node-runs.js';
import type { Scheduler } from '../../src/runner/scheduler.js';
import { Quotas } from '../../src/scheduling/quotas.js';
import { NO_SECRETS } from '../../src/secrets/source.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { FakeRuntime } from './fake-runtime.js';

// One node's domain (job service, scheduler, runs) on a real SQLite store and
// the in-memory container runtime: every way a job can run, in milliseconds.

export const owner: Principal = { owner: 'team-a', scopes: new Set(['submit', 'read', 'cancel']), isAdmin: false };
export const spec = (extra: Partial<JobSpec> = {}): JobSpec => ({ image: 'local/busybox:latest', command: ['true'], ...extra });
export const config: Config = loadConfig({ GANTRY_DATA_DIR: os.tmpdir(), GANTRY_STOP_GRACE_SECONDS: '0' });

export interface Harness {
  runtime: FakeRuntime;
  store: Store;
  jobs: JobService;
  scheduler: Scheduler;
  runs: NodeRuns;
  gpus: GpuAllocator;
  submit(s?: JobSpec): Promise<string>;
  until(id: string, pred?: (j: Job) => boolean, timeoutMs?: number): Promise<Job>;
  lines(id: string): Promise<string[]>;
  restart(): Promise<Harness>;
}

export interface HarnessOptions {
  runtime?: FakeRuntime;
  dataDir?: string;
  /** Wraps the real store (to inject faults at the store seam). */
  store?: (s: Store) => Store;
  /** Overrides the shared test config (a shorter lease converges faster). */
  config?: Config;
  gpuDevices?: GpuDevice[];
}

export async function harness(t: TestContext, o: HarnessOptions = {}): Promise<Harness> {
  const cfg = o.config ?? config;
  const runtime = o.runtime ?? new FakeRuntime();
  const dataDir = o.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sched-'));
  const raw = await openSqliteStore(dataDir);
  const store = o.store ? o.store(raw) : raw;
  const events = new JobEventHub();
  const gpus = new GpuAllocator(o.gpuDevices ?? []);
  const log = pino({ level: 'silent' });
  const seat = new NodeMembership({
    store,
    info: { name: 'node-1', labels: {}, gpus: [], version: 'test', leaseSeconds: cfg.node.leaseSeconds },
    shared: false,
    log,
    onSettled: () => undefined,
    onFenced: async () => undefined,
    onSuperseded: () => undefined,
    onHeartbeat: () => undefined,
  });
  await seat.join();
  const quotas = new Quotas();
  const { jobs, scheduler, runs } = buildDomain({
    config: cfg,
    store,
    runtime,
    gpus,
    events,
    registryLogins: {},
    secrets: NO_SECRETS,
    quotas,
    seat,
    queue: newQueue(cfg, quotas, gpus, seat),
    placementProblem: async () => null,
    log,
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    scheduler.shutdown();
    await raw.close();
  };
  t.after(close);
  await scheduler.start();
  const h: Harness = {
    runtime,
    store,
    jobs,
    scheduler,
    runs,
    gpus,
    submit: async (s = spec()) => (await jobs.submit(owner, s, { idempotencyKey: null, requestId: null })).job.id,
    async until(id, pred = (j) => isTerminal(j.state), timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const j = await jobs.get(owner, id);
        if (pred(j)) return j;
        if (Date.now() > deadline) throw new Error(`job ${id} is ${j.state} (${j.reason})`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async lines(id) {
      return (await store.logs.tail(id, 1000)).map((l) => l.line);
    },
    async restart() {
      await close();
      return harness(t, { ...o, runtime, dataDir });
    },
  };
  return h;
}
