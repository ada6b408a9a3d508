// The top bar: navigation, the token's scopes and "Forget token" show only
// while a token is stored.
import { scopeLabel } from './scopes.js';
import { token } from './token.js';

export function renderHeader() {
  const signedIn = Boolean(token.get());
  document.getElementById('signout').hidden = !signedIn;
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('whoami').textContent = signedIn ? scopeLabel() : '';
}
