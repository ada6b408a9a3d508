import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { OperatorHistory } from './api/routes/v1/history.js';
import { buildHttp, OPENAPI_INFO } from './api/server.js';
import { loadRegistryAuth } from './auth/registry-auth.js';
import { loadTokens, type TokenStore } from './auth/tokens.js';
import type { Config } from './config.js';
import { buildDomain, fleetDecides, newQueue } from './domain.js';
import { bridgeChanges } from './fleet/change-bridge.js';
import { NodeDirectory } from './fleet/directory.js';
import { NodeMembership } from './fleet/membership.js';
import { settleNodeName } from './fleet/node-identity.js';
import { NodeService } from './fleet/node-service.js';
import { RelayRole, reachableUrl } from './fleet/relay-role.js';
import { GpuAllocator } from './gpu/allocator.js';
import { DcgmJobMap } from './gpu/dcgm-job-map.js';
import { GpuHealthBook } from './gpu/health/state.js';
import { discoverGpus, type GpuDevice } from './gpu/inventory.js';
import { TelemetryHistory } from './gpu/telemetry/history.js';
import { readGpus } from './gpu/telemetry/nvidia-smi.js';
import { JobEventHub } from './jobs/events.js';
import { resolveRunSettings } from './jobs/run-settings.js';
import type { JobService } from './jobs/service.js';
import { processLogger } from './logging.js';
import { startAuditRetention } from './logs/audit-retention.js';
import { startRetention } from './logs/retention.js';
import { type OpenMetricsListener, openMetricsListener } from './metrics/open-listener.js';
import { GantryMetrics } from './metrics/registry.js';
import { watchGpuHealth } from './runner/gpu-health-watch.js';
import { GpuSampler } from './runner/gpu-sampler.js';
import { prepareRunFolders } from './runner/run-folders.js';
import type { Scheduler } from './runner/scheduler.js';
import { DockerRuntime } from './runtime/docker/index.js';
import type { ContainerRuntime } from './runtime/runtime.js';
import { QueueHistory } from './scheduling/queue-history.js';
import { Quotas, readQuotasFile } from './scheduling/quotas.js';
import { openSecretSource } from './secrets/open.js';
import { openPostgresStore } from './store/postgres/index.js';
import { openSqliteStore } from './store/sqlite/index.js';
import type { NodeInfo, Store } from './store/store.js';

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
  /** Each GPU's health: faults the monitor saw, and the admin's drains. */
  health: GpuHealthBook;
  scheduler: Scheduler;
  /** Per-job GPU telemetry (GANTRY_GPU_SAMPLE_SECONDS); started with the scheduler when the node has GPUs. */
  gpuSampler: GpuSampler;
  /** The recent samples the operator page draws (memory only). */
  history: OperatorHistory;
  /** This node's seat in the fleet (a single host is a fleet of one). */
  membership: NodeMembership;
  nodes: NodeService;
  tokens: TokenStore;
  /** The teams' limits (GANTRY_QUOTAS_FILE), replaced on SIGHUP. */
  quotas: Quotas;
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
 * time. The only file that knows which store and runtime are used: the
 * embedded SQLite store, or PostgreSQL shared by a fleet when
 * GANTRY_DATABASE_URL is set.
 */
export async function buildApp(configured: Config, overrides: AppOverrides = {}): Promise<FastifyInstance> {
  const config = settleNodeName(configured);
  const { log, droppedLines } = overrides.logger ? { log: overrides.logger, droppedLines: () => 0 } : processLogger(config.logLevel);
  const devices = overrides.gpuDevices ?? (await discoverGpus(config.gpus.source));
  const registryAuth = loadRegistryAuth(config.registryAuthFile);
  const secrets = await openSecretSource(config.secrets.dir);
  if (!overrides.skipScheduler) await prepareRunFolders(config);
  const quotas = new Quotas(config.quotasFile ? readQuotasFile(config.quotasFile) : []);
  const shared = config.databaseUrl !== undefined;
  const store = shared
    ? await openPostgresStore({
        url: config.databaseUrl!,
        node: config.node.name,
        leaseSeconds: config.node.leaseSeconds,
        log,
        poolMax: config.postgres.poolMax,
        sessionUrl: config.postgres.sessionUrl,
      })
    : await openSqliteStore(config.dataDir, config.node.name);
  // Jobs stored before run settings were (a data dir or database of an older
  // Gantry) get theirs now, once, from this configuration, before anything
  // reads them: from here on no reader resolves a default from the config.
  await store.jobs.fillSettings((spec) => resolveRunSettings(spec, config));
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
  if (config.gpus.dcgmJobMappingDir !== null) {
    new DcgmJobMap(config.gpus.dcgmJobMappingDir, gpus, (err, file) =>
      log.warn({ err, file }, 'could not update a dcgm-exporter job mapping file; its GPU is labelled as before until the next change'),
    ).start();
  }
  const health = new GpuHealthBook(devices, store.settings, log);
  await health.load();
  gpus.withhold((uuid, jobId) => health.withheld(uuid, jobId));
  const events = new JobEventHub();
  const queue = newQueue(config, quotas, gpus, config.node);
  const metrics = new GantryMetrics({
    store,
    gpus,
    health,
    events,
    droppedLogLines: droppedLines,
    node: { name: config.node.name, version: OPENAPI_INFO.version },
    teams: { quotas, queue, halfLifeSeconds: config.fairShareHalfLifeSeconds },
  });
  const runtime =
    overrides.runtime ??
    new DockerRuntime({
      socketPath: config.dockerSocket,
      log,
      onError: (op) => metrics.runtimeError(op),
      onCall: (op, seconds) => metrics.runtimeCall(op, seconds),
    });
  const info: NodeInfo = {
    name: config.node.name,
    labels: config.node.labels,
    gpus: devices.map(({ index, uuid, name, memoryMiB }) => ({ index, uuid, name, memoryMiB })),
    version: OPENAPI_INFO.version,
    leaseSeconds: config.node.leaseSeconds,
  };
  const directory = new NodeDirectory(store.nodes);
  // The fleet's change relay (docs/fleet.md): the decider alone listens to
  // PostgreSQL and relays to the others. Not under mutual TLS: a follower
  // has no client certificate to show.
  const relayRole =
    store.relayableChanges && fleetDecides(config) && config.node.relay && config.tls?.clientCaFile == null
      ? new RelayRole(store.relayableChanges, log, config.node.url)
      : null;
  const membership = new NodeMembership({ store, info, shared, log, onBraked: () => metrics.expiryBraked() });
  const domain = buildDomain({
    config,
    store,
    runtime,
    gpus,
    events,
    registryLogins: registryAuth,
    secrets,
    quotas,
    seat: membership,
    queue,
    placementProblem: (spec) => directory.placementProblem(spec),
    log,
    onPass: (seconds) => metrics.schedulerPass(seconds),
    onPreempt: (rule) => metrics.preempted(rule),
    onDeciderPass: (pass) => metrics.deciderPass(pass),
    relay: relayRole,
  });
  const { jobs, runs, scheduler, selfFence, decider } = domain;
  if (decider) metrics.followDecider(() => decider.currentTerm());
  if (relayRole) metrics.followRelay(() => ({ followers: relayRole.relay.followers(), following: relayRole.following() }));
  // The change feed does not bring a node's own changes back to it: its registration, and the nodes it declares lost.
  membership.listen({
    joined: () => directory.invalidate(),
    settled: (settled) => {
      directory.invalidate();
      for (const { record } of settled) {
        jobs.observe(record);
        void jobs.view(record).then((job) => events.publishStatus(job));
      }
      events.publishQueueChanged();
    },
    fenced: () => scheduler.abandonSettled(),
    superseded: () => {
      void scheduler.shutdown();
      void decider?.stop();
    },
  });
  const monitor = watchGpuHealth({ config, devices, gpus, health, runs, events, log });
  const nodes = new NodeService(store, () => {
    directory.invalidate();
    void membership.refresh().then(() => scheduler.kick());
  });
  const unbridge = store.changes
    ? bridgeChanges(store.changes, {
        events,
        jobs,
        nodesChanged: () => {
          directory.invalidate();
          void membership.refresh().then(() => scheduler.kick());
        },
        queued: (jobId, record) =>
          void jobs.refresh(jobId, record).then(
            () => events.publishQueueChanged(),
            // After an outage of the feed, it delivers the jobs changed meanwhile again (or a resync).
            (err) => log.warn({ err, jobId }, 'could not read a job queued by another node'),
          ),
        dequeued: (jobId) => jobs.dequeued(jobId),
        taken: (jobId, state, record) =>
          void jobs.taken(jobId, state, record).catch((err) => log.warn({ err, jobId }, 'could not read a job another node took')),
        queueResync: () => void scheduler.reloadQueue(),
      })
    : () => undefined;

  // What the operator page draws: the cards' and jobs' recent samples, and the queue's length over time.
  const telemetryHistory = new TelemetryHistory(config.gpus.telemetry.sampleSeconds * 1000);
  const queueHistory = new QueueHistory(() => queue.all.inOrder());
  const gpuSampler = new GpuSampler({
    store,
    runtime,
    events,
    settings: config.gpus.telemetry,
    node: config.node.name,
    epoch: () => membership.epoch(),
    read: () => readGpus(Math.max(5_000, config.gpus.telemetry.sampleSeconds * 1000)),
    note: (jobId, line) => runs.note(jobId, line),
    interrupt: (jobId, why) => runs.interrupt(jobId, why),
    onSample: (owner, sample) => {
      metrics.jobGpus.set(owner, sample);
      telemetryHistory.recordJob(sample.jobId, sample.summary.attempt, Date.parse(sample.time), sample.gpus);
    },
    onReading: (at, cards, holders) => telemetryHistory.recordCards(at, cards, holders),
    onGone: (jobId) => metrics.jobGpus.remove(jobId),
    log,
  });

  const app = await buildHttp({
    config,
    log,
    tokens,
    store,
    runtime,
    jobs,
    nodes,
    logs: store.logs,
    events,
    gpus,
    health,
    metrics,
    quotas,
    queue,
    history: { gpus: telemetryHistory, queue: queueHistory },
    relay: relayRole?.relay ?? null,
  });
  const openMetrics =
    config.metrics === 'open' ? openMetricsListener({ scrape: () => metrics.scrape(), contentType: metrics.contentType, log }) : null;
  app.decorate('gantry', {
    config,
    store,
    runtime,
    jobs,
    events,
    gpus,
    health,
    scheduler,
    gpuSampler,
    history: { gpus: telemetryHistory, queue: queueHistory },
    membership,
    nodes,
    tokens,
    quotas,
    metrics,
    openMetrics,
    log,
  });
  // The open metrics port follows the API's own listen() and close().
  if (openMetrics) {
    app.addHook('onListen', async () => {
      await openMetrics.listen(config.host, config.metricsPort).catch((err: unknown) => {
        log.error({ err, port: config.metricsPort }, 'the open metrics listener (GANTRY_METRICS_PORT) could not start');
      });
    });
  }

  if (relayRole) {
    app.addHook('onListen', async () => {
      relayRole.listening(reachableUrl(app.server.address(), config.host, config.tls !== null));
      decider?.republish();
    });
    // Its streams never end by themselves: the server's close would wait for them.
    app.addHook('preClose', async () => relayRole.close());
  }

  const stopRetention = startRetention({
    store,
    settings: { logDays: config.logs.retentionDays, jobDays: config.logs.jobRetentionDays, keepMs: queue.fairShare.horizonMs },
    log,
  });
  const stopAuditRetention = startAuditRetention({ audit: store.audit, days: config.logs.auditRetentionDays, log });
  app.addHook('onClose', async () => {
    stopRetention();
    stopAuditRetention();
    queueHistory.stop();
    membership.stop();
    selfFence.stop();
    unbridge();
    gpuSampler.stop();
    await scheduler.shutdown();
    await decider?.stop();
    await monitor?.stop();
    await openMetrics?.close();
    await store.close();
  });
  await app.ready();
  if (!overrides.skipScheduler) {
    await membership.join();
    membership.start();
    await scheduler.start();
    decider?.start();
    selfFence.start();
    if (devices.length > 0) gpuSampler.start();
    queueHistory.start();
    monitor?.start();
  }
  return app;
}
