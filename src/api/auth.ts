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
  return (scope: Scope, opts: AuthOptions = {}): onRequestHookHandler =>
    (request: FastifyRequest, reply: FastifyReply, done) => {
      const header = request.headers.authorization;
      const match = header ? BEARER.exec(header) : null;
      const principal = match ? tokens.verify(match[1]!) : undefined;
      let refusal: HttpProblem | undefined;
      if (!principal) {
        reply.header('WWW-Authenticate', `Bearer realm="gantry"${header ? ', error="invalid_token"' : ''}`);
        refusal = new HttpProblem(401, 'unauthorized', 'Authentication required', header ? 'the bearer token is not valid' : 'send Authorization: Bearer <token>');
      } else if (!principal.isAdmin && !principal.scopes.has(scope)) {
        refusal = new HttpProblem(403, 'forbidden', 'Forbidden', `this token lacks the "${scope}" scope`);
      }
      if (refusal) {
        const problem = refusal;
        if (opts.holdRefusal) void opts.holdRefusal(request).then(() => sendProblem(reply, problem));
        else sendProblem(reply, problem);
        return;
      }
      request.principal = principal!;
      done();
    };
}

export interface AuthOptions {
  /**
   * Settles when a refused request (401/403) may be answered. The sensor
   * endpoint paces refusals like polls: a deferred Airflow sensor whose token
   * was revoked retries a 401 at once, in a loop (airflow/SENSOR.md).
   */
  holdRefusal?: (request: FastifyRequest) => Promise<void>;
}
