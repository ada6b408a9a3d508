import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ContainerRuntime } from '../../runtime/runtime.js';
import type { Store } from '../../store/store.js';

const HealthSchema = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });
const ReadySchema = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.object({ docker: z.string(), store: z.string() }),
  })
  .meta({ id: 'Readiness' });

/** /healthz and /readyz, without a token. */
export const healthRoutes: FastifyPluginAsyncZod<{ runtime: ContainerRuntime; store: Store }> = async (app, { runtime, store }) => {
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'healthz',
        summary: 'The process is up',
        tags: ['health'],
        response: { 200: HealthSchema },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'readyz',
        summary: 'Docker answers and the store is writable',
        tags: ['health'],
        response: { 200: ReadySchema, 503: ReadySchema },
      },
    },
    async (_request, reply) => {
      const checks = { docker: 'ok', store: 'ok' };
      try {
        await runtime.ping();
      } catch (err) {
        checks.docker = `unreachable: ${(err as Error).message}`;
      }
      try {
        await store.probeWritable();
      } catch (err) {
        checks.store = `not writable: ${(err as Error).message}`;
      }
      const ready = checks.docker === 'ok' && checks.store === 'ok';
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
    },
  );
};
