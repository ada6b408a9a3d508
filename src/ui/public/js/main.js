// The page's entry module. It talks only to Gantry's public REST API (/v1)
// with the bearer token the operator pastes. The address's #fragment picks
// the view; leaving a view aborts its signal, which ends its polling and
// its log stream.
import { whenTokenRefused } from './api.js';
import { renderHeader } from './header.js';
import { forgetScopes, learnScopes } from './scopes.js';
import { token } from './token.js';
import { renderAudit } from './views/audit.js';
import { renderGpus } from './views/gpus.js';
import { renderJob } from './views/job.js';
import { renderLogin } from './views/login.js';
import { renderOverview } from './views/overview.js';
import { renderUsage } from './views/usage.js';

/** Views by the first part of the address's #fragment; each gets its signal and the fragment's query. */
const VIEWS = { gpus: renderGpus, usage: renderUsage, audit: renderAudit };

let view = null; // AbortController of the view on screen

function route(message) {
  view?.abort();
  view = new AbortController();
  const signal = view.signal;
  window.scrollTo(0, 0);
  if (!token.get()) return renderLogin(typeof message === 'string' ? message : null, () => route());
  void learnScopes().then(renderHeader);
  const hash = location.hash || '#/';
  const m = /^#\/jobs\/([^/?#]+)/.exec(hash);
  if (m) return renderJob(decodeURIComponent(m[1]), signal);
  const q = new URLSearchParams(hash.split('?')[1] ?? '');
  const name = /^#\/([a-z]+)/.exec(hash)?.[1];
  markNav(name ?? '');
  if (name && VIEWS[name]) return VIEWS[name](signal, q);
  return renderOverview(signal, q.get('state') ?? '');
}

/** Marks the navigation link of the view on screen. */
function markNav(name) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function signOut(message) {
  token.clear();
  forgetScopes();
  renderHeader();
  route(message);
}

whenTokenRefused(signOut);
document.getElementById('signout').addEventListener('click', () => signOut('Token forgotten.'));
window.addEventListener('hashchange', () => route());
route();
