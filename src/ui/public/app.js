// Gantry's web page. Plain ES module, no dependencies, no build step.
// It talks only to Gantry's public REST API (/v1) with the bearer token the
// operator pastes; the token lives in this tab's sessionStorage and travels
// only in the Authorization header (the live log is read with fetch, not
// EventSource, for that reason), never in a URL.

const TOKEN_KEY = 'gantry.token';
const STATES = ['queued', 'pulling', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'];
const ACTIVE = ['pulling', 'starting', 'running'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
const REFRESH_MS = 2000;
const LOG_TAIL = 5000; // lines fetched when a job page opens
const LOG_DOM_CAP = 20000; // lines kept on the page; Download has them all

const main = document.getElementById('main');

// ---- small helpers -------------------------------------------------------

/** Builds an element; children are text or nodes (never parsed as HTML). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'style') el.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}

/** Resolves once the tab is visible (polling pauses while it is hidden). */
function whenVisible(signal) {
  if (document.visibilityState === 'visible') return Promise.resolve();
  return new Promise((resolve) => {
    const on = () => {
      if (document.visibilityState !== 'visible' && !signal.aborted) return;
      document.removeEventListener('visibilitychange', on);
      resolve();
    };
    document.addEventListener('visibilitychange', on);
    signal.addEventListener('abort', on, { once: true });
  });
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  const s = Math.max(0, ms / 1000);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${String(m % 60).padStart(2, '0')} m`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

function ago(iso) {
  if (!iso) return '';
  return `${fmtDuration(Date.now() - Date.parse(iso))} ago`;
}

function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso }, ago(iso));
}

/** Time from submission until the job left the queue (or until now). */
function waited(job) {
  const end = job.startedAt ?? (job.state === 'queued' || !TERMINAL.has(job.state) ? null : job.finishedAt);
  return (end ? Date.parse(end) : Date.now()) - Date.parse(job.createdAt);
}

/** Time the container ran, if it started. */
function ran(job) {
  if (!job.startedAt) return null;
  return (job.finishedAt ? Date.parse(job.finishedAt) : Date.now()) - Date.parse(job.startedAt);
}

const shortId = (id) => id.slice(0, 8);
const jobLabel = (job) => job.name ?? shortId(job.id);
const jobLink = (job) => h('a', { href: `#/jobs/${encodeURIComponent(job.id)}`, title: job.id, class: 'job-link' }, jobLabel(job));
const badge = (state) => h('span', { class: `badge state-${state}`, 'data-state': state }, state.replace('_', ' '));

function toast(message, kind = 'info') {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.className = kind;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 5000);
}

// ---- token and API -------------------------------------------------------

const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** What the token may do, learnt from the API itself. */
const caps = { cancel: false, known: false };

class ApiError extends Error {
  constructor(status, problem) {
    const text = typeof problem === 'string' && problem ? problem.slice(0, 200) : null;
    super(problem?.detail ?? problem?.title ?? text ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function authHeaders(extra = {}, t = token.get()) {
  return { ...extra, Authorization: `Bearer ${t}` };
}

async function api(path, { method = 'GET', signal, t } = {}) {
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
  if (res.status === 401 && t === undefined) signOut('The token was refused (401). Paste a valid token.');
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/**
 * Whether the token may cancel jobs: cancelling a job that cannot exist
 * answers 403 without the `cancel` scope and 404 with it (auth is checked
 * before the job is looked up), and changes nothing.
 */
async function probeCancel() {
  try {
    await api('/v1/jobs/scope-probe-no-such-job/cancel', { method: 'POST' });
    caps.cancel = true;
  } catch (err) {
    caps.cancel = err instanceof ApiError && err.status === 404;
  }
  caps.known = true;
  renderWhoami();
}

function renderWhoami() {
  const el = document.getElementById('whoami');
  const signedIn = Boolean(token.get());
  document.getElementById('signout').hidden = !signedIn;
  document.getElementById('nav').hidden = !signedIn;
  el.textContent = signedIn && caps.known ? (caps.cancel ? 'token: read, cancel' : 'token: read only') : '';
}

function signOut(message) {
  token.clear();
  caps.known = false;
  caps.cancel = false;
  renderWhoami();
  route(message);
}

// ---- router --------------------------------------------------------------

let view = null; // AbortController of the view on screen

function route(message) {
  view?.abort();
  view = new AbortController();
  const signal = view.signal;
  window.scrollTo(0, 0);
  if (!token.get()) return renderLogin(typeof message === 'string' ? message : null);
  if (!caps.known) void probeCancel();
  const hash = location.hash || '#/';
  const m = /^#\/jobs\/([^/?#]+)/.exec(hash);
  if (m) return renderJob(decodeURIComponent(m[1]), signal);
  const q = new URLSearchParams(hash.split('?')[1] ?? '');
  return renderOverview(signal, q.get('state') ?? '');
}

// ---- sign in -------------------------------------------------------------

function renderLogin(message) {
  document.title = 'Gantry — sign in';
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'gty_…' });
  const error = h('p', { class: 'error', id: 'login-error', hidden: !message }, message ?? '');
  const button = h('button', { type: 'submit', id: 'login-submit' }, 'Use token');
  const form = h(
    'form',
    {
      id: 'login',
      onsubmit: async (e) => {
        e.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        button.disabled = true;
        error.hidden = true;
        try {
          await api('/v1/jobs?limit=1', { t });
          token.set(t);
          route();
        } catch (err) {
          error.textContent =
            err.status === 401 ? 'This token is not valid.' : err.status === 403 ? 'This token lacks the "read" scope.' : `Could not check the token: ${err.message}`;
          error.hidden = false;
        } finally {
          button.disabled = false;
        }
      },
    },
    h('label', { for: 'token' }, 'Bearer token'),
    h('div', { class: 'row' }, input, button),
    error,
  );
  main.replaceChildren(
    h(
      'section',
      { class: 'card login' },
      h('h1', {}, 'Sign in'),
      h('p', { class: 'muted' }, 'Paste a Gantry token. It is kept in this tab’s session storage only and sent in the Authorization header; closing the tab forgets it.'),
      form,
    ),
  );
  renderWhoami();
  input.focus();
}

// ---- overview ------------------------------------------------------------

function table(headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'empty muted' }, empty);
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))), h('tbody', {}, rows));
}

function gpuPanel(list, jobsById) {
  const rows = list.items.map((g) => {
    const pct = g.memoryMiB > 0 ? Math.min(100, Math.round((g.allocatedMemoryMiB / g.memoryMiB) * 100)) : 0;
    return h(
      'tr',
      { 'data-gpu': g.uuid },
      h('td', { class: 'num' }, g.index),
      h('td', {}, h('div', {}, g.name), h('div', { class: 'mono muted small', title: g.uuid }, g.uuid)),
      h(
        'td',
        { class: 'mem' },
        h('div', { class: 'bar', title: `${pct}% allocated` }, h('div', { class: `fill${pct >= 100 ? ' full' : ''}`, style: `width:${pct}%` })),
        h('div', { class: 'small muted' }, `${g.allocatedMemoryMiB.toLocaleString()} / ${g.memoryMiB.toLocaleString()} MiB`),
      ),
      h(
        'td',
        {},
        g.holders.length === 0
          ? h('span', { class: 'muted' }, 'free')
          : g.holders.map((x) => {
              const j = jobsById.get(x.jobId);
              return h(
                'div',
                { class: 'holder' },
                j ? jobLink(j) : h('a', { href: `#/jobs/${encodeURIComponent(x.jobId)}`, class: 'mono' }, shortId(x.jobId)),
                j ? [' ', h('span', { class: 'muted small' }, j.owner)] : null,
                h('span', { class: 'muted small' }, x.memoryMiB === null ? ' · exclusive' : ` · ${x.memoryMiB.toLocaleString()} MiB`),
              );
            }),
      ),
    );
  });
  return table(['#', 'GPU', 'Memory allocated', 'Held by'], rows, 'No GPUs on this host: CPU jobs only.');
}

function queuePanel(queued) {
  const rows = queued.map((j) =>
    h(
      'tr',
      { 'data-job': j.id },
      h('td', { class: 'num' }, j.position === null ? '—' : j.position + 1),
      h('td', {}, jobLink(j)),
      h('td', { class: 'num' }, j.spec.priority ?? 0),
      h('td', {}, j.owner),
      h('td', {}, fmtDuration(waited(j))),
      h('td', { class: 'reason wrap' }, j.reason ?? ''),
    ),
  );
  return table(['Pos.', 'Job', 'Priority', 'Owner', 'Waiting', 'Waiting for'], rows, 'The queue is empty.');
}

function activePanel(active) {
  const rows = active.map((j) =>
    h(
      'tr',
      { 'data-job': j.id },
      h('td', {}, jobLink(j)),
      h('td', {}, badge(j.state), j.pull ? h('div', { class: 'small muted' }, j.pull.status, j.pull.progress ? ` ${j.pull.progress}` : '') : null),
      h('td', {}, j.owner),
      h('td', { class: 'small mono' }, j.gpus.length ? j.gpus.map((u) => h('div', { title: u }, u.slice(0, 12))) : h('span', { class: 'muted' }, 'none')),
      h('td', {}, time(j.startedAt)),
      h('td', {}, fmtDuration(ran(j))),
    ),
  );
  return table(['Job', 'State', 'Owner', 'GPUs', 'Started', 'Running for'], rows, 'Nothing is running.');
}

function recentPanel(items) {
  const rows = items.map((j) =>
    h(
      'tr',
      { 'data-job': j.id, 'data-state': j.state },
      h('td', {}, jobLink(j)),
      h('td', {}, badge(j.state)),
      h('td', { class: 'num' }, j.exitCode ?? ''),
      h('td', { class: 'reason', title: j.reason ?? '' }, j.reason ?? ''),
      h('td', {}, j.owner),
      h('td', {}, time(j.createdAt)),
      h('td', { class: 'num' }, fmtDuration(waited(j))),
      h('td', { class: 'num' }, fmtDuration(ran(j))),
    ),
  );
  return table(['Job', 'State', 'Exit', 'Reason', 'Owner', 'Submitted', 'Waited', 'Ran'], rows, 'No jobs match.');
}

function renderOverview(signal, initialState) {
  document.title = 'Gantry';
  let stateFilter = STATES.includes(initialState) ? initialState : '';
  let limit = 50;
  const slot = (id) => h('div', { id, class: 'slot' }, h('p', { class: 'muted' }, 'Loading…'));
  const banner = h('p', { class: 'error', id: 'refresh-error', hidden: true });
  const filter = h(
    'select',
    {
      id: 'state-filter',
      'aria-label': 'Filter by state',
      onchange: () => {
        stateFilter = filter.value;
        history.replaceState(null, '', stateFilter ? `#/?state=${stateFilter}` : '#/');
        void refresh();
      },
    },
    h('option', { value: '' }, 'All states'),
    STATES.map((s) => h('option', { value: s, selected: s === stateFilter }, s.replace('_', ' '))),
  );
  const more = h('button', { type: 'button', class: 'link', id: 'more', hidden: true, onclick: () => ((limit = Math.min(500, limit + 50)), void refresh()) }, 'Show more');
  const queueCount = h('span', { class: 'count', id: 'queue-count' });
  const activeCount = h('span', { class: 'count', id: 'active-count' });
  const updated = h('span', { class: 'muted small', id: 'updated' });

  main.replaceChildren(
    banner,
    h(
      'div',
      { class: 'grid' },
      h('section', { class: 'card', id: 'gpus' }, h('h2', {}, 'GPUs'), slot('gpus-body')),
      h('section', { class: 'card', id: 'queue' }, h('h2', {}, 'Queue ', queueCount), slot('queue-body')),
    ),
    h('section', { class: 'card', id: 'active' }, h('h2', {}, 'Running ', activeCount), slot('active-body')),
    h(
      'section',
      { class: 'card', id: 'recent' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Recent jobs'), h('span', { class: 'spacer' }), updated, filter),
      slot('recent-body'),
      h('div', { class: 'center' }, more),
    ),
  );

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      // One request at a time: polite to Gantry's per-client rate limits.
      const gpus = await api('/v1/gpus', { signal });
      const queued = await api('/v1/jobs?state=queued&limit=500', { signal });
      const active = await api(`/v1/jobs?state=${ACTIVE.join(',')}&limit=500`, { signal });
      const recent = await api(`/v1/jobs?limit=${limit}${stateFilter ? `&state=${stateFilter}` : ''}`, { signal });
      if (signal.aborted) return;
      const byId = new Map([...active.items, ...recent.items, ...queued.items].map((j) => [j.id, j]));
      const q = [...queued.items].sort((a, b) => (a.position ?? 1e9) - (b.position ?? 1e9));
      document.getElementById('gpus-body').replaceChildren(gpuPanel(gpus, byId));
      document.getElementById('queue-body').replaceChildren(queuePanel(q));
      document.getElementById('active-body').replaceChildren(activePanel(active.items));
      document.getElementById('recent-body').replaceChildren(recentPanel(recent.items));
      queueCount.textContent = String(q.length);
      activeCount.textContent = String(active.items.length);
      more.hidden = recent.nextCursor === null || limit >= 500;
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      banner.hidden = true;
    } catch (err) {
      if (signal.aborted) return;
      banner.textContent = `Refresh failed: ${err.message}. Retrying…`;
      banner.hidden = false;
    } finally {
      busy = false;
    }
  }

  void (async () => {
    while (!signal.aborted) {
      await refresh();
      await sleep(REFRESH_MS, signal);
      await whenVisible(signal);
    }
  })();
}

// ---- one job -------------------------------------------------------------

/** Reads Server-Sent Events from a fetch body; yields the events of each chunk read. */
async function* sseBatches(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      const events = [];
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = { event: 'message', data: [], id: null, retry: null };
        for (const raw of block.split('\n')) {
          const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
          if (line === '' || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') ev.event = val;
          else if (field === 'data') ev.data.push(val);
          else if (field === 'id') ev.id = val;
          else if (field === 'retry' && /^\d+$/.test(val)) ev.retry = Number(val);
        }
        if (ev.data.length > 0 || ev.retry !== null) events.push({ ...ev, data: ev.data.join('\n') });
      }
      if (events.length) yield events;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

/**
 * Follows a job's log over SSE until its `end` event, reconnecting after a
 * dropped connection with Last-Event-ID so no line is lost or repeated.
 */
async function followLog(jobId, signal, on) {
  let lastSeq = null;
  let retryMs = 1000;
  let delay = retryMs;
  let attempt = 0;
  while (!signal.aborted) {
    on.connection(attempt === 0 ? 'connecting' : 'reconnecting');
    attempt++;
    const headers = authHeaders({ Accept: 'text/event-stream' });
    if (lastSeq !== null) headers['Last-Event-ID'] = String(lastSeq);
    const url = `/v1/jobs/${encodeURIComponent(jobId)}/logs${lastSeq === null ? `?tail=${LOG_TAIL}` : ''}`;
    try {
      const res = await fetch(url, { headers, signal, cache: 'no-store' });
      if (res.status === 401) return signOut('The token was refused (401). Paste a valid token.');
      if (!res.ok) {
        const problem = (res.headers.get('content-type') ?? '').includes('json') ? await res.json() : null;
        throw new ApiError(res.status, problem);
      }
      on.connection('live');
      delay = retryMs;
      for await (const events of sseBatches(res.body)) {
        const lines = [];
        for (const ev of events) {
          if (ev.retry !== null) retryMs = ev.retry;
          if (ev.event === 'log') {
            const l = JSON.parse(ev.data);
            lastSeq = l.seq;
            lines.push(l);
          } else if (ev.event === 'status') {
            if (lines.length) on.lines(lines.splice(0));
            on.status(JSON.parse(ev.data));
          } else if (ev.event === 'end') {
            if (lines.length) on.lines(lines.splice(0));
            on.status(JSON.parse(ev.data));
            on.connection('ended');
            return;
          }
        }
        if (lines.length) on.lines(lines);
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) {
        on.connection('gone');
        return;
      }
    }
    if (signal.aborted) return;
    on.connection('reconnecting');
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}

function detailsList(job) {
  const rows = [
    ['State', badge(job.state)],
    job.state === 'queued' ? ['Position', job.position === null ? '—' : `${job.position + 1} in the queue`] : null,
    ['Reason', job.reason ?? h('span', { class: 'muted' }, '—')],
    ['Exit code', job.exitCode ?? h('span', { class: 'muted' }, '—')],
    ['Owner', job.owner],
    ['Priority', job.spec.priority ?? 0],
    ['Submitted', time(job.createdAt)],
    ['Started', time(job.startedAt)],
    ['Finished', time(job.finishedAt)],
    ['Waited', fmtDuration(waited(job))],
    ['Ran', ran(job) === null ? h('span', { class: 'muted' }, '—') : fmtDuration(ran(job))],
    ['GPUs', job.gpus.length ? job.gpus.map((u) => h('div', { class: 'mono' }, u)) : h('span', { class: 'muted' }, 'none')],
    job.pull ? ['Pull', `${job.pull.status}${job.pull.progress ? ` ${job.pull.progress}` : ''}`] : null,
    ['Result', job.result === null ? h('span', { class: 'muted' }, '—') : h('span', { class: 'mono' }, job.result)],
    ['Labels', Object.keys(job.labels).length ? Object.entries(job.labels).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`)) : h('span', { class: 'muted' }, '—')],
    ['Job id', h('span', { class: 'mono' }, job.id)],
    ['Request id', job.requestId ? h('span', { class: 'mono' }, job.requestId) : h('span', { class: 'muted' }, '—')],
  ].filter(Boolean);
  return h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { 'data-field': k.toLowerCase().replace(' ', '-') }, v)]));
}

async function renderJob(id, signal) {
  document.title = `Gantry — job ${shortId(id)}`;
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let job;
  try {
    job = await api(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
  } catch (err) {
    if (signal.aborted) return;
    main.replaceChildren(
      h('a', { href: '#/', class: 'back' }, '← Overview'),
      h('section', { class: 'card' }, h('h1', {}, 'Job not found'), h('p', { class: 'error' }, err.status === 404 ? `No job ${id} is visible to this token.` : err.message)),
    );
    return;
  }
  if (signal.aborted) return;
  document.title = `Gantry — ${jobLabel(job)}`;

  const title = h('h1', { id: 'job-title' });
  const state = h('span', { id: 'job-state' });
  const details = h('div', { id: 'job-details' });
  const cancel = h('button', { type: 'button', id: 'cancel', class: 'danger', hidden: true }, 'Cancel job');
  const conn = h('span', { id: 'log-connection', class: 'conn' });
  const log = h('pre', { id: 'log', class: 'log', tabindex: '0' });
  const logWrap = h('div', { class: 'log-wrap' }, log);
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
  const stamps = h('input', { type: 'checkbox', id: 'timestamps', onchange: () => log.classList.toggle('show-time', stamps.checked) });
  const lineCount = h('span', { class: 'muted small', id: 'line-count' }, '0 lines');
  const download = h('button', { type: 'button', class: 'link', id: 'download' }, 'Download');
  let lines = 0;

  function render() {
    title.replaceChildren(jobLabel(job), job.name ? h('span', { class: 'muted mono small id' }, job.id) : null);
    state.replaceChildren(badge(job.state));
    details.replaceChildren(detailsList(job));
    cancel.hidden = !(caps.cancel && !TERMINAL.has(job.state));
  }
  render();

  let armed = null;
  cancel.addEventListener('click', async () => {
    if (!armed) {
      cancel.textContent = 'Really cancel?';
      cancel.classList.add('armed');
      armed = setTimeout(() => {
        armed = null;
        cancel.textContent = 'Cancel job';
        cancel.classList.remove('armed');
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    cancel.disabled = true;
    cancel.textContent = 'Cancelling…';
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST', signal });
      toast(TERMINAL.has(job.state) ? `Job ${job.state}.` : 'Cancel requested: the container gets SIGTERM, then SIGKILL after the grace period.');
      render();
    } catch (err) {
      if (err.status === 403) {
        caps.cancel = false;
        renderWhoami();
      }
      toast(`Cancel failed: ${err.message}`, 'error');
    } finally {
      cancel.disabled = false;
      cancel.classList.remove('armed');
      cancel.textContent = 'Cancel job';
      render();
    }
  });

  download.addEventListener('click', async () => {
    try {
      const res = await fetch(`/v1/jobs/${encodeURIComponent(id)}/logs`, { headers: authHeaders({ Accept: 'text/plain' }), cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: `${jobLabel(job)}.log` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      toast(`Download failed: ${err.message}`, 'error');
    }
  });

  main.replaceChildren(
    h('a', { href: '#/', class: 'back' }, '← Overview'),
    h('div', { class: 'job-head' }, title, state, h('span', { class: 'spacer' }), cancel),
    h(
      'div',
      { class: 'job-grid' },
      h('section', { class: 'card' }, h('h2', {}, 'Details'), details),
      h(
        'section',
        { class: 'card log-card' },
        h(
          'div',
          { class: 'card-head' },
          h('h2', {}, 'Log'),
          conn,
          h('span', { class: 'spacer' }),
          lineCount,
          h('label', { class: 'small' }, stamps, ' Times'),
          h('label', { class: 'small' }, follow, ' Follow'),
          download,
        ),
        logWrap,
      ),
    ),
    h('section', { class: 'card' }, h('h2', {}, 'Spec'), h('pre', { class: 'spec', id: 'spec' }, JSON.stringify(job.spec, null, 2))),
  );

  const CONN_TEXT = { connecting: 'connecting…', live: '● live', reconnecting: 'reconnecting…', ended: 'ended', gone: 'job gone' };
  let emptyNote = h('span', { class: 'muted' }, 'No output yet.');
  log.append(emptyNote);

  const on = {
    connection(s) {
      conn.textContent = CONN_TEXT[s] ?? s;
      conn.dataset.state = s;
    },
    lines(batch) {
      if (emptyNote) {
        emptyNote.remove();
        emptyNote = null;
      }
      const frag = document.createDocumentFragment();
      for (const l of batch) {
        frag.append(h('span', { class: `ln ${l.stream}`, 'data-seq': l.seq, 'data-t': l.time.slice(11, 23) }, `${l.line}\n`));
      }
      log.append(frag);
      lines += batch.length;
      while (log.childElementCount > LOG_DOM_CAP) log.firstElementChild.remove();
      lineCount.textContent = `${lines.toLocaleString()} line${lines === 1 ? '' : 's'}`;
      if (follow.checked && logWrap.scrollTop < logWrap.scrollHeight - logWrap.clientHeight - 1) {
        autoScrolling = true; // this scroll event is ours, not the reader's
        logWrap.scrollTop = logWrap.scrollHeight;
      }
    },
    status(next) {
      job = next;
      render();
    },
  };
  // Scrolling up stops following; scrolling back to the bottom resumes it.
  let autoScrolling = false;
  logWrap.addEventListener('scroll', () => {
    if (autoScrolling) {
      autoScrolling = false;
      return;
    }
    follow.checked = logWrap.scrollHeight - logWrap.scrollTop - logWrap.clientHeight < 4;
  });
  follow.addEventListener('change', () => {
    if (follow.checked) logWrap.scrollTop = logWrap.scrollHeight;
  });

  // While queued, the position changes without a status event: poll it.
  // Durations of a live job tick once a second.
  void (async () => {
    let n = 0;
    while (!signal.aborted && !TERMINAL.has(job.state)) {
      await sleep(1000, signal);
      if (signal.aborted) return;
      if (job.state === 'queued' && ++n % 3 === 0) {
        try {
          const fresh = await api(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
          if (fresh.state === 'queued' || TERMINAL.has(fresh.state)) job = fresh;
        } catch {
          // the SSE stream still carries state changes
        }
      }
      if (!signal.aborted) render();
    }
  })();

  await followLog(id, signal, on);
}

// ---- start ---------------------------------------------------------------

document.getElementById('signout').addEventListener('click', () => signOut('Token forgotten.'));
window.addEventListener('hashchange', () => route());
route();
