import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Principal, Scope, TokenStore } from '../auth/tokens.js';
import { HttpProblem, sendProblem } from './problem.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The principal of a valid bearer token in an `Authorization` header, if any. */
export function bearerPrincipal(tokens: TokenStore, header: string | undefined): Principal | undefined {
  const match = header ? BEARER.exec(header) : null;
  return match ? tokens.verify(match[1]!) : undefined;
}

/** `admin` implies every scope. */
export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.isAdmin || principal.scopes.has(scope);
}

/**
 * onRequest hook factory (runs before the body is parsed, so an unauthenticated caller learns nothing from validation): authenticates the bearer token and checks the scope.
 */
export function authenticator(tokens: TokenStore) {
  return (scope: Scope, opts: AuthOptions = {}): onRequestHookHandler =>
    (request: FastifyRequest, reply: FastifyReply, done) => {
      const header = request.headers.authorization;
      const principal = bearerPrincipal(tokens, header);
      let refusal: HttpProblem | undefined;
      if (!principal) {
        reply.header('WWW-Authenticate', `Bearer realm="gantry"${header ? ', error="invalid_token"' : ''}`);
        refusal = new HttpProblem(401, 'unauthorized', 'Authentication required', header ? 'the bearer token is not valid' : 'send Authorization: Bearer <token>');
      } else if (!hasScope(principal, scope)) {
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
