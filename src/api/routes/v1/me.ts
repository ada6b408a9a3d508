import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { SCOPES } from '../../../model/principal.js';
import { errorResponses, jsonResponse, type RouteDeps } from '../common.js';

export const TokenInfoSchema = z
  .object({
    owner: z.string().describe('The owner the token acts for.'),
    scopes: z.array(z.enum(SCOPES)).describe('What the token may do; an admin token holds every scope.'),
    admin: z.boolean().describe("Whether the token is an admin's: it sees and cancels every owner's jobs."),
  })
  .meta({ id: 'TokenInfo' });

/** /v1/me: who the presented token is, for clients that show it (the operator page). */
export const meRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app) => {
  app.get(
    '/v1/me',
    {
      onRequest: app.auth(null),
      schema: {
        operationId: 'getTokenInfo',
        summary: 'The owner and scopes of the presented token',
        tags: ['tokens'],
        security: [{ bearer: [] }],
        response: {
          200: jsonResponse(TokenInfoSchema, {
            description: 'The token is valid; this is what it may do',
            example: { owner: 'airflow', scopes: ['submit', 'read', 'cancel'], admin: false },
          }),
          ...errorResponses(401),
        },
      },
    },
    async (request) => {
      const { owner, scopes, isAdmin } = request.principal;
      return { owner, scopes: isAdmin ? [...SCOPES] : SCOPES.filter((s) => scopes.has(s)), admin: isAdmin };
    },
  );
};
