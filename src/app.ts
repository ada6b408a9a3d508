import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildHttp } from './api/server.js';
import { loadRegistryAuth } from './auth/registry-auth.js';
import { loadTokens, type TokenStore } from './auth/tokens.js';
import type { Config } from './config.js';
import { buildDomain } from './domain.js';
import { GpuAllocator } from './gpu/allocator.js';
import { discoverGpus, type GpuDevice } from './gpu/inventory.js';
import { JobEventHub } from './jobs/events.js';
import type { JobService } from './jobs/service.js';
import { processLogger } from './logging.js';
import { startRetention } from './logs/retention.js';
import { type OpenMetricsListener, openMetricsListener } from './metrics/open-listener.js';
import { GantryMetrics } from './metrics/registry.js';
import type { Scheduler } from './runner/scheduler.js';
import { DockerRuntime } from './runtime/docker/index.js';
import type { ContainerRuntime } from './runtime/runtime.js';
import { openSqliteStore } from './store/sqlite/index.js';
import type { Store } from './store/store.js';

export { OPENAPI_INFO } from './api/server.js';

export interface AppOverrides {
  runtime?: ContainerRuntime;
  logger?: Logger;
  gpuDevices?: GpuDevice[];
  /** Where a generated admin token is shown (default: stderr, once). */
  announceToken?: (token: string) => void;
  /** Do not reconcile with the engine or take jobs (scripts/openapi.ts builds the app only to read its document). */
  skipScheduler?: boolean;
}

/** The parts of a running Gantry that tests and main.ts reach into. */
export interface Gantry {
  config: Config;
  store: Store;
  runtime: ContainerRuntime;
  jobs: JobService;
  events: JobEventHub;
  gpus: GpuAllocator;
  scheduler: Scheduler;
  tokens: TokenStore;
  metrics: GantryMetrics;
  /** The no-token metrics listener (GANTRY_METRICS=open), or null. */
  openMetrics: OpenMetricsListener | null;
  /** The process log (pino), for flushing it on shutdown. */
  log: Logger;
}

declare module 'fastify' {
  interface FastifyInstance {
    gantry: Gantry;
  }
}

/**
 * The composition root: builds the store, the container runtime, the
 * domain services and the HTTP API from the config, wires them together
 * and returns the ready app, without listening. Nothing happens at import
 * time. The only file that knows which store and runtime are used.
 */
export async function buildApp(config: Config, overrides: AppOverrides = {}): Promise<FastifyInstance> {
  const { log, droppedLines } = overrides.logger ? { log: overrides.logger, droppedLines: () => 0 } : processLogger(config.logLevel);
  const devices = overrides.gpuDevices ?? (await discoverGpus(config.gpus.source));
  const registryAuth = loadRegistryAuth(config.registryAuthFile);
  const store = openSqliteStore(config.dataDir);
  const tokens = await loadTokens({
    adminToken: config.adminToken,
    tokensFile: config.tokensFile,
    settings: store.settings,
    announce:
      overrides.announceToken ??
      ((token) =>
        process.stderr.write(
          `\nNo token was configured, so Gantry generated an admin token. It is shown this once; only its hash is kept:\n\n  ${token}\n\n`,
        )),
  });
  const gpus = new GpuAllocator(devices);
  const events = new JobEventHub();
  const metrics = new GantryMetrics({ store, gpus, events, droppedLogLines: droppedLines });
  const runtime =
    overrides.runtime ??
    new DockerRuntime({
      socketPath: config.dockerSocket,
      log,
      onError: (op) => metrics.runtimeError(op),
      onCall: (op, seconds) => metrics.runtimeCall(op, seconds),
    });
  const { jobs, scheduler } = buildDomain({ config, store, runtime, gpus, events, registryLogins: registryAuth, log });

  const app = await buildHttp({ config, log, tokens, store, runtime, jobs, logs: store.logs, events, gpus, metrics });
  const openMetrics =
    config.metrics === 'open' ? openMetricsListener({ scrape: () => metrics.scrape(), contentType: metrics.contentType, log }) : null;
  app.decorate('gantry', { config, store, runtime, jobs, events, gpus, scheduler, tokens, metrics, openMetrics, log });
  // The open metrics port follows the API's own listen() and close().
  if (openMetrics) {
    app.addHook('onListen', async () => {
      await openMetrics.listen(config.host, config.metricsPort).catch((err: unknown) => {
        log.error({ err, port: config.metricsPort }, 'the open metrics listener (GANTRY_METRICS_PORT) could not start');
      });
    });
  }

  const stopRetention = startRetention({ store, days: config.logs.retentionDays, log });
  app.addHook('onClose', async () => {
    stopRetention();
    scheduler.shutdown();
    await openMetrics?.close();
    await store.close();
  });
  await app.ready();
  if (!overrides.skipScheduler) await scheduler.start();
  return app;
}
