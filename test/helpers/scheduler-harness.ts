import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import pino from 'pino';
import type { Principal } from '../../src/auth/tokens.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import type { JobSpec } from '../../src/model/job.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { startDomain, type TestDomain } from './domain.js';
import { FakeRuntime } from './fake-runtime.js';

// One node's domain (job service, scheduler, runs) on a real SQLite store and
// the in-memory container runtime: every way a job can run, in milliseconds.

export const owner: Principal = { owner: 'team-a', scopes: new Set(['submit', 'read', 'cancel']), isAdmin: false };
export const spec = (extra: Partial<JobSpec> = {}): JobSpec => ({ image: 'local/busybox:latest', command: ['true'], ...extra });
export const config: Config = loadConfig({ GANTRY_DATA_DIR: os.tmpdir(), GANTRY_STOP_GRACE_SECONDS: '0' });

export interface Harness extends TestDomain {
  runtime: FakeRuntime;
  store: Store;
  /** Submits as `owner`, the spec defaulting to `spec()`. */
  submit(s?: JobSpec): Promise<string>;
  /** Shuts this node down and starts it again on the same data dir and runtime. */
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
  const runtime = o.runtime ?? new FakeRuntime();
  const dataDir = o.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sched-'));
  const raw = await openSqliteStore(dataDir);
  const store = o.store ? o.store(raw) : raw;
  const domain = await startDomain({
    store,
    runtime,
    config: o.config ?? config,
    log: pino({ level: 'silent' }),
    owner,
    ...(o.gpuDevices ? { gpuDevices: o.gpuDevices } : {}),
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await domain.scheduler.shutdown();
    await raw.close();
  };
  t.after(close);
  return {
    ...domain,
    runtime,
    store,
    submit: (s = spec()) => domain.submit(s),
    async restart() {
      await close();
      return harness(t, { ...o, runtime, dataDir });
    },
  };
}
