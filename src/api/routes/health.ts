import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { TokenStore } from '../../auth/tokens.js';
import type { ContainerRuntime } from '../../runtime/runtime.js';
import type { Store } from '../../store/store.js';
import { bearerPrincipal } from '../plugins/auth.js';

const HealthSchema = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });
const ReadySchema = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z
      .object({ docker: z.string(), store: z.string() })
      .describe('`ok`, or what is wrong: the error text (which may name hosts and paths) only to a request with an admin token.'),
  })
  .meta({ id: 'Readiness' });

/**
 * /healthz and /readyz, without a token. A failed check says which part is
 * down to anyone; why (Docker's or PostgreSQL's error text, which names
 * hosts, users and paths) only to an admin's token.
 */
export const healthRoutes: FastifyPluginAsyncZod<{ runtime: ContainerRuntime; store: Store; tokens: TokenStore }> = async (
  app,
  { runtime, store, tokens },
) => {
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
    async (request, reply) => {
      const admin = bearerPrincipal(tokens, request.headers.authorization)?.isAdmin === true;
      const why = (state: string, err: unknown) => (admin ? `${state}: ${(err as Error).message}` : state);
      const checks = { docker: 'ok', store: 'ok' };
      try {
        await runtime.ping();
      } catch (err) {
        checks.docker = why('unreachable', err);
      }
      try {
        await store.probeWritable();
      } catch (err) {
        checks.store = why('not writable', err);
      }
      const ready = checks.docker === 'ok' && checks.store === 'ok';
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
    },
  );
};
