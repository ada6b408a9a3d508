import type { FastifyPluginAsync } from 'fastify';
import { type ChangeRelay, RELAY_PATH } from '../../../fleet/change-relay.js';
import { HttpProblem } from '../../problems.js';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * The fleet's change relay (fleet/change-relay.ts), for the other nodes of
 * the fleet only: a bearer token published with the decider's lease, not
 * a user's. Left out of the OpenAPI document: no client of Gantry calls it.
 */
export const fleetChangeRoutes: FastifyPluginAsync<{ relay: ChangeRelay }> = async (app, { relay }) => {
  app.get(RELAY_PATH, { schema: { hide: true } }, async (request, reply) => {
    const token = BEARER.exec(request.headers.authorization ?? '')?.[1];
    if (token === undefined || !relay.admits(token)) {
      reply.header('WWW-Authenticate', 'Bearer realm="gantry-fleet"');
      throw new HttpProblem(
        401,
        'unauthorized',
        'Authentication required',
        'the fleet’s change relay takes the token its decider published',
      );
    }
    if (!relay.serving()) {
      throw new HttpProblem(
        503,
        'relay-unavailable',
        'No relay here',
        'this node does not relay the fleet’s changes now: listen to the store',
      );
    }
    reply.hijack();
    relay.follow(reply.raw);
  });
};
