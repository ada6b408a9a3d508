// The top bar: navigation, the token's scopes and "Forget token" show only
// while a token is stored; the Audit link only for an admin's token.
import { isAdmin, scopeLabel } from './scopes.js';
import { token } from './token.js';

export function renderHeader() {
  const signedIn = Boolean(token.get());
  document.getElementById('signout').hidden = !signedIn;
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('whoami').textContent = signedIn ? scopeLabel() : '';
  // The audit trail is an admin's to read (the API refuses any other token).
  document.getElementById('nav-audit').hidden = !(signedIn && isAdmin());
}
