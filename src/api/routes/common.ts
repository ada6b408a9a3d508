import type { Config } from '../../config.js';
import type { JobService } from '../../jobs/service.js';
import type { JobHub } from '../../logs/hub.js';
import type { LogStore } from '../../logs/store.js';
import type { GpuAllocator } from '../../gpu/allocator.js';
import type { Scope } from '../../auth/tokens.js';
import type { onRequestHookHandler } from 'fastify';
import { ProblemSchema } from '../problem.js';

export interface RouteDeps {
  config: Config;
  jobs: JobService;
  logs: LogStore;
  hub: JobHub;
  gpus: GpuAllocator;
  auth: (scope: Scope) => onRequestHookHandler;
}

const DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request',
  401: 'Missing or invalid bearer token',
  403: 'The token lacks the needed scope',
  404: 'No such job (or it belongs to another owner)',
  409: 'Conflicts with the job\'s state',
  413: 'Request body too large',
  415: 'Unsupported content type (send application/json)',
  422: 'Invalid request or refused by policy; `errors` names the fields at fault',
  429: 'Too many requests',
};

/** Problem+json responses for the given status codes, for route schemas. */
export function errorResponses(...codes: number[]) {
  return Object.fromEntries(
    codes.map((c) => [
      c,
      { description: DESCRIPTIONS[c] ?? 'Error', content: { 'application/problem+json': { schema: ProblemSchema } } },
    ]),
  );
}
