import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { GantryMetrics } from '../../metrics/registry.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** An SSE follower: counted by gantry_sse_clients for as long as it stays, not as a request. */
    isSse: boolean;
  }
}

/** Every answered request's latency, by method, route pattern and status (SSE streams excluded). */
export const httpMetrics = fp(
  async (app: FastifyInstance, { metrics }: { metrics: GantryMetrics }) => {
    app.decorateRequest('isSse', false);
    // Callback-style: an async hook costs every request a promise.
    app.addHook('onResponse', (request, reply, done) => {
      if (!request.isSse) {
        metrics.httpDuration.observe(request.method, request.routePattern || 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
      }
      done();
    });
  },
  { name: 'gantry-http-metrics', dependencies: ['gantry-request-context'] },
);
