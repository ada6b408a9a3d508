import type { FastifyInstance } from 'fastify';
import type { GantryMetrics } from '../../metrics/registry.js';

/** GET /metrics on the API port: Prometheus text, for a token with the `metrics` scope (or admin). */
export async function metricsRoute(app: FastifyInstance, { metrics }: { metrics: GantryMetrics }): Promise<void> {
  app.get('/metrics', { onRequest: app.auth('metrics'), schema: { hide: true } }, async (_request, reply) =>
    reply.type(metrics.contentType).send(await metrics.scrape()),
  );
}
