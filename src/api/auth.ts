import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Principal, Scope, TokenStore } from '../auth/tokens.js';
import { HttpProblem, sendProblem } from './problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * onRequest hook factory (runs before the body is parsed, so an unauthenticated caller learns nothing from validation): authenticates the bearer token and checks the scope.
 * `admin` implies every scope.
 */
export function authenticator(tokens: TokenStore) {
  return (scope: Scope): onRequestHookHandler =>
    (request: FastifyRequest, reply: FastifyReply, done) => {
      const header = request.headers.authorization;
      const match = header ? BEARER.exec(header) : null;
      const principal = match ? tokens.verify(match[1]!) : undefined;
      if (!principal) {
        reply.header('WWW-Authenticate', `Bearer realm="gantry"${header ? ', error="invalid_token"' : ''}`);
        sendProblem(
          reply,
          new HttpProblem(401, 'unauthorized', 'Authentication required', header ? 'the bearer token is not valid' : 'send Authorization: Bearer <token>'),
        );
        return;
      }
      if (!principal.isAdmin && !principal.scopes.has(scope)) {
        sendProblem(reply, new HttpProblem(403, 'forbidden', 'Forbidden', `this token lacks the "${scope}" scope`));
        return;
      }
      request.principal = principal;
      done();
    };
}
