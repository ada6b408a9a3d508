import type { FastifyInstance, onRequestHookHandler } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /** The matched route's URL pattern (`/v1/jobs/:id`); '' when no route matched (404). */
    routePattern: string;
  }
}

/**
 * Gives every request its route's URL pattern as a plain property, for the
 * request log line and the metrics labels. `request.routeOptions.url` would
 * do, but that getter builds a fresh 12-field object on every read, and the
 * two reads per request cost a status poll ~10 % of its CPU (bench/ab.ts:
 * docs/performance.md). Install on the root instance before any route.
 */
export function installRoutePattern(app: FastifyInstance): void {
  app.decorateRequest('routePattern', '');
  app.addHook('onRoute', (route) => {
    const pattern = route.url;
    const setPattern: onRequestHookHandler = (request, _reply, done) => {
      request.routePattern = pattern;
      done();
    };
    // First of the route's own hooks, so a request refused by the route's
    // auth hook is still logged and counted under its route.
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [setPattern, ...own] as typeof route.onRequest;
  });
}
