// Requests to Gantry's REST API with the bearer token.
import { h, toast } from './dom.js';
import { sleep } from './timing.js';
import { token } from './token.js';

export class ApiError extends Error {
  constructor(status, problem) {
    const text = typeof problem === 'string' && problem ? problem.slice(0, 200) : null;
    super(problem?.detail ?? problem?.title ?? text ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let onTokenRefused = () => undefined;

/** What to do when the API refuses the stored token (401): set once by the router. */
export function whenTokenRefused(handler) {
  onTokenRefused = handler;
}

export function tokenRefused() {
  onTokenRefused('The token was refused (401). Paste a valid token.');
}

export function authHeaders(extra = {}, t = token.get()) {
  return { ...extra, Authorization: `Bearer ${t}` };
}

/**
 * Calls the API and returns the parsed body; throws ApiError on an error
 * status. `t` checks a candidate token instead of the stored one (its 401 then
 * signs nobody out).
 */
export async function api(path, { method = 'GET', signal, t } = {}) {
  let res;
  for (let attempt = 0; ; attempt++) {
    res = await fetch(path, { method, signal, cache: 'no-store', headers: authHeaders({ Accept: 'application/json' }, t ?? token.get()) });
    if (res.status !== 429 || attempt === 3 || signal?.aborted) break;
    // Rate limited: wait as told, then try again.
    const wait = Number(res.headers.get('retry-after'));
    await sleep(Number.isFinite(wait) && wait > 0 ? Math.min(wait, 30) * 1000 : 500 * (attempt + 1), signal);
  }
  const type = res.headers.get('content-type') ?? '';
  const body = type.includes('json') ? await res.json() : await res.text();
  if (res.status === 401 && t === undefined) tokenRefused();
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/** Saves what `url` answers as a file, fetched with the token (a plain link could not carry it). */
export async function download(url, accept, filename) {
  try {
    const res = await fetch(url, { headers: authHeaders({ Accept: accept }), cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const href = URL.createObjectURL(await res.blob());
    const a = h('a', { href, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10_000);
  } catch (err) {
    toast(`Download failed: ${err.message}`, 'error');
  }
}
