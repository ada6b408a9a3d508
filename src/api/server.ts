import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { TokenStore } from '../auth/tokens.js';
import type { ChangeRelay } from '../fleet/change-relay.js';
import { UsageReporter } from '../jobs/usage-report.js';
import type { ContainerRuntime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import { uiRoutes } from '../ui/routes.js';
import { openapiTransform, openapiTransformObject } from './openapi.js';
import { auditTrail } from './plugins/audit.js';
import { auth } from './plugins/auth.js';
import { httpMetrics } from './plugins/metrics.js';
import { frameworkErrorHandler, problemHandlers } from './plugins/problem-handlers.js';
import { requestContext, requestIdFor } from './plugins/request-context.js';
import type { RouteDeps } from './routes/common.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoute } from './routes/metrics.js';
import { openapiRoute } from './routes/openapi.js';
import { auditRoutes } from './routes/v1/audit.js';
import { fleetChangeRoutes } from './routes/v1/fleet-changes.js';
import { gpuRoutes } from './routes/v1/gpus.js';
import { historyRoutes, type OperatorHistory } from './routes/v1/history.js';
import { jobLogRoutes } from './routes/v1/job-logs.js';
import { jobWaitRoutes } from './routes/v1/job-wait.js';
import { jobRoutes } from './routes/v1/jobs.js';
import { meRoutes } from './routes/v1/me.js';
import { nodeRoutes } from './routes/v1/nodes.js';
import { teamRoutes } from './routes/v1/teams.js';
import { usageRoutes } from './routes/v1/usage.js';
import { readTls } from './tls.js';

export const OPENAPI_INFO = {
  title: 'Gantry',
  version: '1.0.0',
  description:
    'Runs GPU containers for Apache Airflow. Gantry alone owns the Docker socket; clients submit job specs that Gantry checks against the operator policy and turns into containers itself.',
};

export interface HttpDeps extends RouteDeps {
  log: Logger;
  tokens: TokenStore;
  store: Store;
  runtime: ContainerRuntime;
  history: OperatorHistory;
  /** The fleet's change relay this node serves while it decides; null where the fleet relays nothing. */
  relay: ChangeRelay | null;
}

/**
 * The HTTP API as one fastify instance: one pipeline of plugins (request
 * id and log line, auth, audit trail, metrics, problem+json) that every
 * route goes through, and the routes, laid out by URL. It does not listen.
 */
export async function buildHttp(d: HttpDeps): Promise<FastifyInstance> {
  const options = {
    loggerInstance: d.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestIdFor,
    // The longest path parameter is a node name (253 characters, as a hostname); longer ones answer 414.
    routerOptions: { maxParamLength: 253 },
    ajv: { customOptions: { coerceTypes: false } },
    frameworkErrors: frameworkErrorHandler,
  };
  // With TLS the server is an https.Server; the routes and plugins see the
  // same request and reply types either way, so the instance is typed as one.
  const app = d.config.tls ? (Fastify({ ...options, https: readTls(d.config.tls) }) as unknown as FastifyInstance) : Fastify(options);
  await app.register(requestContext);
  await app.register(auth, { tokens: d.tokens });
  await app.register(auditTrail, { audit: d.store.audit, metrics: d.metrics, tokens: d.tokens, node: d.config.node.name });
  await app.register(httpMetrics, { metrics: d.metrics });
  await app.register(problemHandlers);

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
        { name: 'nodes', description: 'The fleet: each Gantry node, its lease, GPUs and drain switch' },
        { name: 'teams', description: 'Teams (GANTRY_QUOTAS_FILE): their limits, their use now, and fair share' },
        { name: 'usage', description: 'GPU-hours per owner over a window, from the jobs’ records (JSON or CSV)' },
        { name: 'audit', description: 'Who changed what: every state-changing request, refused ones included (admin)' },
        { name: 'tokens', description: 'The presented token' },
        { name: 'health', description: 'Liveness and readiness (no auth)' },
      ],
    },
    transform: openapiTransform,
    transformObject: openapiTransformObject,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  await app.register(openapiRoute);
  await app.register(uiRoutes);
  if (d.config.metrics !== 'off') await app.register(metricsRoute, { metrics: d.metrics });

  await app.register(async (api) => {
    // The zod compilers are scoped to Gantry's own routes, so plugins with
    // plain JSON-Schema routes keep fastify's defaults.
    api.setValidatorCompiler(validatorCompiler);
    api.setSerializerCompiler(serializerCompiler);
    // JSON only: anything else is a 415, not a string the schema then rejects.
    api.removeContentTypeParser('text/plain');
    // An empty body sent as application/json (Airflow's HttpOperator does this
    // for a POST without data) is "no body", not malformed JSON; everything
    // else goes through fastify's own parser, prototype-poisoning checks included.
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
    const typed = api.withTypeProvider<ZodTypeProvider>();
    await typed.register(healthRoutes, { runtime: d.runtime, store: d.store, tokens: d.tokens });
    const deps: RouteDeps = {
      config: d.config,
      jobs: d.jobs,
      logs: d.logs,
      events: d.events,
      gpus: d.gpus,
      health: d.health,
      metrics: d.metrics,
      nodes: d.nodes,
      quotas: d.quotas,
      queue: d.queue,
    };
    await typed.register(jobRoutes, deps);
    await typed.register(jobLogRoutes, deps);
    await typed.register(gpuRoutes, deps);
    await typed.register(jobWaitRoutes, deps);
    await typed.register(meRoutes, deps);
    await typed.register(nodeRoutes, deps);
    await typed.register(teamRoutes, deps);
    await typed.register(auditRoutes, { audit: d.store.audit });
    await typed.register(historyRoutes, {
      history: d.history,
      jobs: d.jobs,
      gpus: d.gpus,
      node: d.config.node.name,
      sampleSeconds: d.config.gpus.telemetry.sampleSeconds,
    });
    const usage = new UsageReporter({ jobs: d.store.jobs, nodes: d.store.nodes, weights: d.config.gpus.modelWeights });
    await typed.register(usageRoutes, { usage });
    if (d.relay) await api.register(fleetChangeRoutes, { relay: d.relay });
  });
  return app;
}
