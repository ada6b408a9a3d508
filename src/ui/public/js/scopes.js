// What the stored token may do, as GET /v1/me says: its owner, its scopes
// (an admin token holds every one) and whether it is an admin's.
import { api } from './api.js';
import { token } from './token.js';

const ORDER = ['submit', 'read', 'cancel', 'metrics'];

/** What is known of one token; replaced when the token changes. */
let current = null;

/** Learns the stored token's scopes, once per token; resolves when they are known. */
export function learnScopes() {
  const t = token.get();
  if (current?.token !== t) {
    const learning = { token: t, scopes: new Set(), admin: false, known: false };
    current = learning;
    learning.done = api('/v1/me').then(
      (me) => {
        if (current !== learning) return; // signed out or another token meanwhile
        learning.scopes = new Set(me.scopes);
        learning.admin = me.admin;
        learning.known = true;
      },
      () => {
        // Shown as unknown; the requests the page makes still say what is refused.
      },
    );
  }
  return current.done;
}

export function forgetScopes() {
  current = null;
}

/** Marks a scope as not held (the API refused it after all); refused `admin`, the token is no admin's. */
export function dropScope(scope) {
  current?.scopes.delete(scope);
  if (scope === 'admin' && current) current.admin = false;
}

/** Whether the stored token is known to hold the scope. */
export function may(scope) {
  return Boolean(current?.known && current.token === token.get() && current.scopes.has(scope));
}

/** Whether the stored token is known to be an admin's (it may drain nodes). */
export function isAdmin() {
  return Boolean(current?.known && current.token === token.get() && current.admin);
}

/** The header's words for the token: empty until its scopes are known. */
export function scopeLabel() {
  if (!current?.known || current.token !== token.get()) return '';
  if (current.admin) return 'token: admin (every scope)';
  const held = ORDER.filter((s) => current.scopes.has(s));
  return held.length === 1 ? `token: ${held[0]} only` : `token: ${held.join(', ')}`;
}
