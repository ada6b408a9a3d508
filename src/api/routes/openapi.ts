import type { FastifyInstance } from 'fastify';

/** GET /openapi.json: the document, unauthenticated (it is the same for everyone). */
export async function openapiRoute(app: FastifyInstance): Promise<void> {
  app.get('/openapi.json', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(app.swagger()),
  );
}
