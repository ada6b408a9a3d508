import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FastifyServerFactory } from 'fastify';
import type { Logger } from 'pino';
import type { TokenStore } from '../auth/tokens.js';
import type { JobService } from '../jobs/service.js';
import { bearerPrincipal, hasScope } from './auth.js';
import { frozenJson } from './frozen-json.js';
import { requestIdFor } from './request-id.js';
import { logRequest, roundMs } from './request-log.js';

/** The status poll's URL, matched only in its plain form: no query, no encoding, a job id as Gantry makes them. */
const STATUS_URL = /^\/v1\/jobs\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
export const STATUS_ROUTE = '/v1/jobs/:id';

export interface StatusFastPathDeps {
  tokens: TokenStore;
  jobs: Pick<JobService, 'findVisible'>;
  log: Logger;
  /** Records the request in gantry_http_request_duration_seconds, as the metrics hook would. */
  observe: (seconds: number) => void;
  /** True once the app is closing: fastify then answers 503 itself. */
  isClosing: () => boolean;
}

/**
 * The status poll (`GET /v1/jobs/{id}`) answered before fastify routes it,
 * when the answer is a 200: a valid token with the `read` scope and a job it
 * may see. Anything else (another method or URL form, no or a bad token, a
 * missing scope, no such job, a closing app) returns false having written
 * nothing, and fastify answers it as before, with its problem+json. So the
 * fast path duplicates no error handling, only the successful answer, and
 * that answer is the route's own: the same view and JSON (`findVisible`,
 * `frozenJson`), the same headers, request id, log line and latency metric
 * (test/integration/status-fast-path.test.ts compares the two answers).
 *
 * Why: with 100 pollers in flight on one thread, a poll's latency is its CPU
 * cost times the queue (Little's law), and fastify's request, reply and
 * hook machinery around Gantry's own work was ~20 % of that cost (135.7 →
 * 109.4 µs per poll, bench/ab.ts; docs/performance.md, sixth pass).
 */
export function statusFastPath(deps: StatusFastPathDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { tokens, jobs, log, observe, isClosing } = deps;
  return (req, res) => {
    if (req.method !== 'GET') return false;
    const match = STATUS_URL.exec(req.url!);
    if (match === null || isClosing()) return false;
    const start = performance.now();
    const principal = bearerPrincipal(tokens, req.headers.authorization);
    if (principal === undefined || !hasScope(principal, 'read')) return false;
    const job = jobs.findVisible(principal, match[1]!);
    if (job === undefined) return false;
    const body = frozenJson(job);
    const reqId = requestIdFor(req);
    res.writeHead(200, {
      'x-request-id': reqId,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
    const ms = performance.now() - start;
    observe(ms / 1000);
    if (log.isLevelEnabled('info')) {
      logRequest(log, { reqId, method: 'GET', url: req.url!, route: STATUS_ROUTE, status: 200, ms: roundMs(ms), owner: principal.owner });
    }
    return true;
  };
}

interface ServerTimeouts {
  keepAliveTimeout: number;
  requestTimeout: number;
  connectionTimeout: number;
  maxRequestsPerSocket: number;
}

/**
 * Fastify's `serverFactory`: the HTTP/1 server fastify would make itself
 * (same timeouts, from fastify's resolved options), with `first` offered
 * every request before fastify's router.
 */
export function serverWith(first: (req: IncomingMessage, res: ServerResponse) => boolean): FastifyServerFactory {
  return (handler, options) => {
    // fastify passes its own options here, defaults already applied.
    const opts = options as unknown as ServerTimeouts;
    const server = http.createServer((req, res) => {
      if (!first(req, res)) handler(req, res);
    });
    server.keepAliveTimeout = opts.keepAliveTimeout;
    server.requestTimeout = opts.requestTimeout;
    server.setTimeout(opts.connectionTimeout);
    if (opts.maxRequestsPerSocket > 0) server.maxRequestsPerSocket = opts.maxRequestsPerSocket;
    return server;
  };
}
