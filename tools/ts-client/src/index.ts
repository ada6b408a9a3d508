/**
 * Gantry's TypeScript client: openapi-fetch over the types that
 * openapi-typescript generates from openapi/openapi.json (src/schema.d.ts;
 * regenerate with `npm run generate` here after `npm run openapi` at the root).
 */
import createClient, { type Client } from 'openapi-fetch';
import type { components, operations, paths } from './schema.js';

export type { components, operations, paths };
export type Job = components['schemas']['Job'];
export type JobSpec = components['schemas']['JobSpecInput'];
export type Problem = components['schemas']['Problem'];
/** JSON bodies, problem+json errors and the text log. */
export type GantryMedia = 'application/json' | 'application/problem+json' | 'text/plain';
export type GantryClient = Client<paths, GantryMedia>;

/** A client whose every request carries the bearer token. */
export function createGantryClient(baseUrl: string, token: string, init: { fetch?: typeof fetch } = {}): GantryClient {
  return createClient<paths, GantryMedia>({
    baseUrl,
    headers: { authorization: `Bearer ${token}` },
    ...(init.fetch ? { fetch: init.fetch } : {}),
  });
}

const TERMINAL = new Set<Job['state']>(['succeeded', 'failed', 'cancelled', 'timed_out']);

/** Polls GET /v1/jobs/{id} until the job has ended; returns it. */
export async function waitForJob(client: GantryClient, id: string, opts: { intervalMs?: number; timeoutMs?: number } = {}): Promise<Job> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const { data, error, response } = await client.GET('/v1/jobs/{id}', { params: { path: { id } } });
    if (error) throw new Error(`GET /v1/jobs/${id}: ${response.status} ${error.title}: ${error.detail ?? ''}`);
    if (TERMINAL.has(data.state)) return data;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${data.state} after ${opts.timeoutMs ?? 60_000} ms`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250));
  }
}
