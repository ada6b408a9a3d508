import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { Logger } from 'pino';

declare module 'fastify' {
  interface FastifyRequest {
    /** The matched route's URL pattern (`/v1/jobs/:id`); '' when no route matched (404). */
    routePattern: string;
  }
}

const CLIENT_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * A request's id (fastify's `genReqId`): always Gantry's own, a fresh UUID,
 * so no client can make two requests share one (the audit trail and the
 * log join on it). What the client sent is its claim: clientRequestIdOf.
 */
export function requestIdFor(_req: IncomingMessage): string {
  return crypto.randomUUID();
}

/** The caller's `X-Request-Id` when it is a plain token (so Airflow's logs can be joined with Gantry's), else null. */
export function clientRequestIdOf(req: { headers: IncomingMessage['headers'] }): string | null {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && CLIENT_ID.test(given) ? given : null;
}

/**
 * Every request: its id sent back in `X-Request-Id`, its route's pattern
 * as a plain property (for the log line and metric labels), and one
 * structured log line when it is answered. Hooks are callback-style and no
 * log line is built below its level: they run on every status poll.
 */
export const requestContext = fp(
  async (app: FastifyInstance) => {
    app.decorateRequest('routePattern', '');
    // `request.routeOptions.url` would do, but that getter builds a fresh
    // object on every read; the pattern is fixed per route, so each route
    // gets a hook that sets it, first among its own hooks (a request refused
    // by the route's auth hook is still logged and counted under its route).
    app.addHook('onRoute', (route) => {
      const pattern = route.url;
      const setPattern: onRequestHookHandler = (request, _reply, done) => {
        request.routePattern = pattern;
        done();
      };
      const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
      route.onRequest = [setPattern, ...own] as typeof route.onRequest;
    });
    app.addHook('onRequest', (request, reply, done) => {
      reply.header('X-Request-Id', request.id);
      done();
    });
    const log = app.log as unknown as Logger;
    app.addHook('onResponse', (request, reply, done) => {
      if (log.isLevelEnabled('info')) {
        request.log.info(
          {
            method: request.method,
            url: request.url,
            route: request.routePattern || undefined,
            status: reply.statusCode,
            ms: Math.round(reply.elapsedTime * 100) / 100,
            owner: request.principal?.owner,
            clientRequestId: clientRequestIdOf(request) ?? undefined,
          },
          'request',
        );
      }
      done();
    });
  },
  { name: 'gantry-request-context' },
);
