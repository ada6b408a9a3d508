// What the stored token may do. The API has no "who am I" request, so each
// scope is learnt from a request that changes nothing: the scope is checked
// before anything else, so a token without it gets 403 and a token with it
// gets the answer named below. `read` is held by any signed-in token (signing
// in lists jobs). An admin token holds every scope, so it is shown with each
// of them; what only `admin` grants (every owner's jobs) has no such request,
// so the label cannot name it. Each probe names itself in its URL so Gantry's
// request log shows what these answers are.
import { ApiError, api } from './api.js';
import { token } from './token.js';

const PROBES = [
  // No body: the missing spec is refused (400 or 422), so nothing is submitted.
  { scope: 'submit', method: 'POST', path: '/v1/jobs?scope-probe', held: [400, 422] },
  // No such job (404), so nothing is cancelled.
  { scope: 'cancel', method: 'POST', path: '/v1/jobs/scope-probe-no-such-job/cancel', held: [404] },
  // With GANTRY_METRICS=off there is no /metrics (404) and the scope grants nothing.
  { scope: 'metrics', method: 'GET', path: '/metrics?scope-probe', held: ['ok'] },
];
const ORDER = ['submit', 'read', 'cancel', 'metrics'];

/** The scopes learnt for one token; replaced when the token changes. */
let current = null;

/** Learns the stored token's scopes, once per token; resolves when they are known. */
export function learnScopes() {
  const t = token.get();
  if (current?.token !== t) {
    current = { token: t, scopes: new Set(['read']), known: false };
    current.done = probe(current);
  }
  return current.done;
}

async function probe(learning) {
  for (const p of PROBES) {
    const answer = await api(p.path, { method: p.method }).then(
      () => 'ok',
      (err) => (err instanceof ApiError ? err.status : null),
    );
    if (current !== learning) return; // signed out or another token meanwhile
    if (p.held.includes(answer)) learning.scopes.add(p.scope);
  }
  learning.known = true;
}

export function forgetScopes() {
  current = null;
}

/** Marks a scope as not held (the API refused it after all). */
export function dropScope(scope) {
  current?.scopes.delete(scope);
}

/** Whether the stored token is known to hold the scope. */
export function may(scope) {
  return Boolean(current?.known && current.token === token.get() && current.scopes.has(scope));
}

/** The header's words for the token: empty until its scopes are known. */
export function scopeLabel() {
  if (!current?.known || current.token !== token.get()) return '';
  const held = ORDER.filter((s) => current.scopes.has(s));
  return held.length === 1 ? `token: ${held[0]} only` : `token: ${held.join(', ')}`;
}
