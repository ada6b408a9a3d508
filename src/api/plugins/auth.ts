import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { TokenStore } from '../../auth/tokens.js';
import type { Principal, Scope } from '../../model/principal.js';
import { HttpProblem, sendProblem } from '../problems.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who made the request; set by the route's auth hook before anything else runs. */
    principal: Principal;
  }
  interface FastifyInstance {
    /** The onRequest hook that admits a request with a valid bearer token carrying the scope (any valid token without one). */
    auth(scope: Scope | null, opts?: AuthOptions): onRequestHookHandler;
  }
}

export interface AuthOptions {
  /**
   * Settles when a refused request (401/403) may be answered. The sensor
   * endpoint paces refusals like polls: a deferred Airflow sensor whose token
   * was revoked retries a 401 at once, in a loop (airflow/SENSOR.md).
   */
  holdRefusal?: (request: FastifyRequest) => Promise<void>;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The principal of the request's bearer token, if it carries a valid one. */
export function bearerPrincipal(tokens: TokenStore, header: string | undefined): Principal | undefined {
  const match = header ? BEARER.exec(header) : null;
  return match ? tokens.verify(match[1]!) : undefined;
}

/** `admin` implies every scope. */
function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.isAdmin || principal.scopes.has(scope);
}

/**
 * Bearer-token authentication, as an onRequest hook per route: it runs
 * before the body is parsed, so an unauthenticated caller learns nothing
 * from validation.
 */
export const auth = fp(
  async (app: FastifyInstance, { tokens }: { tokens: TokenStore }) => {
    app.decorateRequest('principal', null as unknown as Principal);
    app.decorate(
      'auth',
      (scope: Scope | null, opts: AuthOptions = {}): onRequestHookHandler =>
        (request: FastifyRequest, reply: FastifyReply, done) => {
          const header = request.headers.authorization;
          const principal = bearerPrincipal(tokens, header);
          let refusal: HttpProblem | undefined;
          if (!principal) {
            reply.header('WWW-Authenticate', `Bearer realm="gantry"${header ? ', error="invalid_token"' : ''}`);
            refusal = new HttpProblem(
              401,
              'unauthorized',
              'Authentication required',
              header ? 'the bearer token is not valid' : 'send Authorization: Bearer <token>',
            );
          } else if (scope !== null && !hasScope(principal, scope)) {
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
        },
    );
  },
  { name: 'gantry-auth' },
);
