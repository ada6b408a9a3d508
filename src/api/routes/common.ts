import type { z } from 'zod';
import type { Config } from '../../config.js';
import type { NodeService } from '../../fleet/node-service.js';
import type { GpuAllocator } from '../../gpu/allocator.js';
import type { GpuHealthBook } from '../../gpu/health/state.js';
import type { JobEventHub } from '../../jobs/events.js';
import type { JobService } from '../../jobs/service.js';
import type { GantryMetrics } from '../../metrics/registry.js';
import type { QueueState } from '../../scheduling/queue-state.js';
import type { Quotas } from '../../scheduling/quotas.js';
import type { LogStore } from '../../store/store.js';
import { problemExamples } from '../examples.js';
import { ProblemSchema } from '../problems.js';

/** What the /v1 routes work with. */
export interface RouteDeps {
  config: Config;
  jobs: JobService;
  logs: LogStore;
  events: JobEventHub;
  gpus: GpuAllocator;
  health: GpuHealthBook;
  metrics: GantryMetrics;
  nodes: NodeService;
  /** The teams' limits, reloaded in place on SIGHUP. */
  quotas: Quotas;
  /** The queue as this node knows it, fleet-wide, and its fair share. */
  queue: QueueState;
}

const DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request: a body that is not JSON, or a path that is not valid percent-encoding',
  401: 'Missing or invalid bearer token',
  403: 'The token lacks the needed scope',
  404: 'No such job (or it belongs to another owner)',
  413: 'Request body too large',
  414: 'A path parameter is too long to be an id',
  415: 'Unsupported content type (send application/json)',
  422: 'Invalid request or refused by policy; `errors` names the fields at fault',
  429: 'Too many requests',
  503: 'The store cannot be reached now; nothing was stored (see Retry-After)',
  507: "The store's disk is full; nothing was stored (see Retry-After)",
};

/** Problem+json responses for the given status codes, for route schemas. */
export function errorResponses(...codes: number[]) {
  return Object.fromEntries(codes.map((c) => [c, problemResponse(c)]));
}

/**
 * One problem+json response, described and exemplified as every route does
 * unless this route says otherwise (a 404 of something other than a job).
 */
export function problemResponse(code: number, description = DESCRIPTIONS[code] ?? 'Error', example = problemExamples[code]) {
  return {
    description,
    content: { 'application/problem+json': { schema: ProblemSchema, ...(example ? { example } : {}) } },
  };
}

/**
 * A JSON response in the content form, for when the document should show
 * more than the schema: an example of this response, or response headers.
 * (src/api/openapi.ts carries both into the OpenAPI document.)
 */
export function jsonResponse<T extends z.ZodType>(
  schema: T,
  doc: { description: string; example?: z.output<T>; headers?: Record<string, z.ZodType> },
) {
  return {
    description: doc.description,
    ...(doc.headers ? { headers: doc.headers } : {}),
    content: { 'application/json': { schema, ...(doc.example !== undefined ? { example: doc.example } : {}) } },
  };
}
