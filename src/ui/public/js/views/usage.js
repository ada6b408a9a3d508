// Usage: GPU-hours per owner and per team over a chosen window (GET
// /v1/usage), as bars and a table, with the CSV download; each team's
// share, use now and borrowing (GET /v1/teams). A token that is no
// admin's gets its own owner's figures and its own team only, as the API
// answers them.
import { api, download } from '../api.js';
import { barChart } from '../chart.js';
import { h, main, table } from '../dom.js';
import { isAdmin, learnScopes } from '../scopes.js';

const WINDOWS = { '1d': 1, '7d': 7, '30d': 30, '90d': 90 };
/** GPU-hours as read: two decimals, or two significant digits below 0.1 (a few minutes' use would round to 0). */
const hours = (x) => (x > 0 && x < 0.1 ? x.toPrecision(2) : Number(x.toFixed(x < 10 ? 2 : 1)).toLocaleString());

/** Each team's GPU-hours in the window: the sum over its owners the report lists. */
export function teamHours(report, teams) {
  const byOwner = new Map(report.items.map((i) => [i.owner, i]));
  return teams.items.map((t) => {
    const mine = t.owners.map((o) => byOwner.get(o)).filter(Boolean);
    return { team: t, gpuHours: mine.reduce((a, i) => a + i.gpuHours, 0), weighted: mine.reduce((a, i) => a + i.weightedGpuHours, 0) };
  });
}

function teamsSection(report, teams) {
  const totalShare = teams.items.reduce((a, t) => a + t.limits.share, 0);
  const rows = teamHours(report, teams).map(({ team: t, gpuHours, weighted }) =>
    h(
      'tr',
      { 'data-team': t.name },
      h('td', {}, h('div', {}, t.name), h('div', { class: 'small muted' }, t.owners.join(', '))),
      h('td', { class: 'num', 'data-field': 'team-hours' }, hours(gpuHours)),
      h('td', { class: 'num' }, hours(weighted)),
      h(
        'td',
        { class: 'num', 'data-field': 'share' },
        isAdmin() && totalShare > 0 ? `${t.limits.share} (${Math.round((t.limits.share / totalShare) * 100)}%)` : t.limits.share,
      ),
      h('td', { class: 'num', 'data-field': 'use' }, t.limits.gpus === null ? t.use.gpus : `${t.use.gpus} / ${t.limits.gpus}`),
      h(
        'td',
        { class: 'num', 'data-field': 'borrowing' },
        `${t.use.borrowedGpus}${t.limits.borrowGpus ? ` of ${t.limits.borrowGpus}` : ''}`,
      ),
    ),
  );
  const bars = teamHours(report, teams).map((x) => ({ label: x.team.name, value: x.gpuHours, cls: 'team' }));
  return h(
    'section',
    { class: 'card', id: 'usage-teams' },
    h('h2', {}, 'Teams'),
    bars.length ? barChart({ label: 'GPU-hours per team', unit: ' GPU-h', rows: bars }) : null,
    table(
      ['Team', 'GPU-hours', 'Weighted', 'Share', 'GPUs held now / nominal', 'Borrowed now'],
      rows,
      isAdmin() ? 'No teams (GANTRY_QUOTAS_FILE).' : 'Your owner is in no team.',
    ),
  );
}

export function renderUsage(signal, query) {
  document.title = 'Gantry — usage';
  const win = WINDOWS[query.get('window')] ? query.get('window') : '7d';
  const pick = h(
    'select',
    { id: 'window', 'aria-label': 'Window', onchange: () => (location.hash = `#/usage?window=${pick.value}`) },
    Object.keys(WINDOWS).map((k) => h('option', { value: k, selected: k === win }, `last ${WINDOWS[k]} day${WINDOWS[k] > 1 ? 's' : ''}`)),
  );
  const to = new Date();
  const from = new Date(to.getTime() - WINDOWS[win] * 86_400_000);
  const q = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  const csv = h(
    'button',
    { type: 'button', id: 'usage-csv', onclick: () => void download(`/v1/usage?${q}&format=csv`, 'text/csv', 'gantry-usage.csv') },
    'Download CSV',
  );
  const body = h('div', { id: 'usage-body' }, h('p', { class: 'muted' }, 'Loading…'));
  main.replaceChildren(h('div', { class: 'card-head' }, h('h1', {}, 'GPU usage'), h('span', { class: 'spacer' }), pick, csv), body);

  void (async () => {
    try {
      await learnScopes();
      const report = await api(`/v1/usage?${q}`, { signal });
      const teams = await api('/v1/teams', { signal });
      if (signal.aborted) return;
      const rows = report.items.map((i) =>
        h(
          'tr',
          { 'data-owner': i.owner },
          h('td', {}, i.owner),
          h('td', { class: 'num', 'data-field': 'gpu-hours' }, hours(i.gpuHours)),
          h('td', { class: 'num' }, hours(i.weightedGpuHours)),
          h('td', { class: 'num' }, i.jobs),
          h('td', { class: 'num' }, i.attempts),
          h(
            'td',
            { class: 'small' },
            i.byModel.map((m) => h('div', {}, `${m.model}: ${hours(m.gpuHours)} GPU-h`)),
          ),
        ),
      );
      body.replaceChildren(
        h(
          'section',
          { class: 'card', id: 'usage-owners' },
          h('h2', {}, isAdmin() ? 'GPU-hours per owner' : 'Your GPU-hours'),
          report.items.length
            ? barChart({
                label: 'GPU-hours per owner',
                unit: ' GPU-h',
                rows: report.items.map((i) => ({ label: i.owner, value: i.gpuHours })),
              })
            : null,
          table(['Owner', 'GPU-hours', 'Weighted', 'Jobs', 'Attempts', 'By model'], rows, 'No GPU time in this window.'),
        ),
        teamsSection(report, teams),
      );
    } catch (err) {
      if (!signal.aborted) body.replaceChildren(h('p', { class: 'error' }, `Could not read usage: ${err.message}`));
    }
  })();
}
