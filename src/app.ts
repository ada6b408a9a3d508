import Docker from 'dockerode';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import {
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { authenticator } from './api/auth.js';
import { frameworkErrorHandler, installNotFoundHandler, installProblemHandlers } from './api/problem.js';
import { openapiRoute, openapiTransform, openapiTransformObject } from './api/openapi.js';
import { healthRoutes } from './api/routes/health.js';
import { jobRoutes } from './api/routes/jobs.js';
import { logRoutes } from './api/routes/logs.js';
import { gpuRoutes } from './api/routes/gpus.js';
import { waitRoutes } from './api/routes/wait.js';
import type { RouteDeps } from './api/routes/common.js';
import { loadTokens, type TokenStore } from './auth/tokens.js';
import { GpuAllocator } from './gpu/allocator.js';
import { discoverGpus, type GpuDevice } from './gpu/inventory.js';
import { JobService } from './jobs/service.js';
import { JobHub } from './logs/hub.js';
import { LogStore } from './logs/store.js';
import { ImagePuller, loadRegistryAuth } from './runner/images.js';
import { reconcile, type ReconcileReport } from './runner/reconcile.js';
import { Scheduler } from './runner/scheduler.js';
import { openDb, type Db } from './store/db.js';
import { JobsRepo } from './store/jobs-repo.js';
import { Settings } from './store/settings.js';
import { startRetention } from './logs/retention.js';
import { GantryMetrics, installMetrics } from './metrics/index.js';
import { uiRoutes } from './ui/routes.js';
import { processLogger } from './logging.js';
import { installRoutePattern } from './api/route-pattern.js';
import { requestIdFor } from './api/request-id.js';
import { logRequest, roundMs } from './api/request-log.js';
import { STATUS_ROUTE, serverWith, statusFastPath } from './api/status-fast-path.js';

export interface AppOverrides {
  docker?: Docker;
  logger?: Logger;
  gpuDevices?: GpuDevice[];
  /** Where a generated admin token is shown (default: stderr, once). */
  announceToken?: (token: string) => void;
  /** Skip the start-up reconcile with Docker (scripts/openapi.ts builds the app only to read its document). */
  skipReconcile?: boolean;
}

/** The parts of a running Gantry that tests and main.ts reach into. */
export interface Gantry {
  config: Config;
  db: Db;
  docker: Docker;
  jobs: JobService;
  logs: LogStore;
  hub: JobHub;
  gpus: GpuAllocator;
  scheduler: Scheduler;
  tokens: TokenStore;
  reconciled: ReconcileReport;
  /** The process log (pino), for flushing it on shutdown. */
  log: Logger;
}

declare module 'fastify' {
  interface FastifyInstance {
    gantry: Gantry;
  }
}

export const OPENAPI_INFO = {
  title: 'Gantry',
  version: '1.0.0',
  description:
    'Runs GPU containers for Apache Airflow. Gantry alone owns the Docker socket; clients submit job specs that Gantry checks against the operator policy and turns into containers itself.',
};

/**
 * Builds a ready Gantry (store opened, GPUs discovered, containers
 * reconciled, routes registered) without listening. Nothing happens at
 * import time; everything is driven by config and overrides.
 */
export async function buildApp(config: Config, overrides: AppOverrides = {}): Promise<FastifyInstance> {
  const { log, droppedLines } = overrides.logger ? { log: overrides.logger, droppedLines: () => 0 } : processLogger(config.logLevel);
  const docker = overrides.docker ?? new Docker({ socketPath: config.dockerSocket });
  const db = openDb(config.dataDir);
  const settings = new Settings(db);
  const tokens = loadTokens({
    adminToken: config.adminToken,
    tokensFile: config.tokensFile,
    settings,
    announce:
      overrides.announceToken ??
      ((token) =>
        process.stderr.write(
          `\nNo token was configured, so Gantry generated an admin token. It is shown this once; only its hash is kept:\n\n  ${token}\n\n`,
        )),
  });
  const devices = overrides.gpuDevices ?? (await discoverGpus(config.gpus.source));
  const gpus = new GpuAllocator(devices);
  const hub = new JobHub();
  const logs = new LogStore(db);
  const jobs = new JobService(new JobsRepo(db), hub);
  const images = new ImagePuller(docker, loadRegistryAuth(config.registryAuthFile));
  const metrics = new GantryMetrics({ db, gpus, hub, droppedLogLines: droppedLines });
  const scheduler = new Scheduler({ config, docker, jobs, logs, hub, gpus, images, log, dockerError: metrics.dockerError });
  jobs.attach(scheduler);
  const reconciled = overrides.skipReconcile
    ? { adopted: [], vanished: [], unknownContainers: [], removedLeftovers: [] }
    : await reconcile({ docker, jobs, scheduler, keepContainers: config.logs.keepContainers, log });
  log.info({ gpus: devices.length, ...reconciled }, 'reconciled with Docker');
  const stopRetention = startRetention({ db, logs, repo: jobs.repo, days: config.logs.retentionDays, log });

  let closing = false;
  const fastStatus = statusFastPath({
    tokens,
    jobs,
    log,
    observe: (seconds) => metrics.httpDuration.observe('GET', STATUS_ROUTE, 200, seconds),
    isClosing: () => closing,
  });
  const app = Fastify({
    serverFactory: serverWith(fastStatus),
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestIdFor,
    ajv: { customOptions: { coerceTypes: false } },
    frameworkErrors: frameworkErrorHandler,
  });
  app.decorate('gantry', { config, db, docker, jobs, logs, hub, gpus, scheduler, tokens, reconciled, log });

  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  installRoutePattern(app);
  // One structured line per request, with the id that is also sent back.
  // Callback-style hooks, and no log line built below its level: these run
  // on every status poll (bench: docs/performance.md).
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('X-Request-Id', request.id);
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    if (log.isLevelEnabled('info')) {
      logRequest(request.log, {
        method: request.method,
        url: request.url,
        route: request.routePattern || undefined,
        status: reply.statusCode,
        ms: roundMs(reply.elapsedTime),
        owner: request.principal?.owner,
      });
    }
    done();
  });
  // Prometheus: /metrics (GANTRY_METRICS), HTTP latency and SSE clients on every route.
  installMetrics(app, metrics, { config, tokens });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: OPENAPI_INFO,
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'A Gantry token (see the README: tokens and scopes).' },
        },
      },
      tags: [
        { name: 'jobs', description: 'Submit, follow and cancel container jobs' },
        { name: 'logs', description: 'Job output, stored durably by Gantry' },
        { name: 'gpus', description: 'GPU inventory and allocation' },
        { name: 'health', description: 'Liveness and readiness (no auth)' },
      ],
    },
    transform: openapiTransform,
    transformObject: openapiTransformObject,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  await app.register(openapiRoute);
  await app.register(uiRoutes); // the web page at /ui/

  const deps: RouteDeps = { config, jobs, logs, hub, gpus, auth: authenticator(tokens) };
  await app.register(async (api) => {
    // The zod compilers are scoped to Gantry's own routes, so plugins with
    // plain JSON-Schema routes keep Fastify's defaults.
    api.setValidatorCompiler(validatorCompiler);
    api.setSerializerCompiler(serializerCompiler);
    // JSON only: anything else is a 415, not a string the schema then rejects.
    api.removeContentTypeParser('text/plain');
    // An empty body sent as application/json (Airflow's HttpOperator does this
    // for a POST without data) is "no body", not malformed JSON; everything
    // else goes through Fastify's own parser, prototype-poisoning checks included.
    const parseJson = api.getDefaultJsonParser('error', 'error');
    api.removeContentTypeParser('application/json');
    api.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      if (body === '') return done(null, undefined);
      parseJson(request, body as string, done);
    });
    // Any other type: an empty body is still "no body" (aiohttp labels an empty
    // POST application/octet-stream); a non-empty one is refused with 415.
    api.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
      if (body === '') return done(null, undefined);
      const err = Object.assign(new Error(`Unsupported Media Type: ${request.headers['content-type'] ?? 'none'}; send application/json`), {
        statusCode: 415,
      });
      done(err, undefined);
    });
    installProblemHandlers(api);
    const typed = api.withTypeProvider<ZodTypeProvider>();
    await typed.register(healthRoutes, { docker, db });
    await typed.register(jobRoutes, deps);
    await typed.register(logRoutes, deps);
    await typed.register(gpuRoutes, deps);
    await typed.register(waitRoutes, deps);
  });
  installProblemHandlers(app);
  installNotFoundHandler(app);

  app.addHook('onClose', async () => {
    stopRetention();
    scheduler.shutdown();
    db.close();
  });
  await app.ready();
  scheduler.kick();
  return app;
}
