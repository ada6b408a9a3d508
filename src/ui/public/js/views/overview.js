// The overview: GPUs, the queue, the teams' use against their quotas, the
// fleet's nodes, running and recent jobs, refreshed every two seconds while
// the tab is visible.
import { api } from '../api.js';
import { h, main } from '../dom.js';
import { ACTIVE, STATES } from '../jobs.js';
import { learnScopes } from '../scopes.js';
import { sleep, whenVisible } from '../timing.js';
import { nodePanel } from './overview-nodes.js';
import { activePanel, gpuPanel, queuePanel, recentPanel, teamPanel } from './overview-panels.js';

const REFRESH_MS = 2000;

export function renderOverview(signal, initialState) {
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
  const showMore = () => {
    limit = Math.min(500, limit + 50);
    void refresh();
  };
  const more = h('button', { type: 'button', class: 'link', id: 'more', hidden: true, onclick: showMore }, 'Show more');
  const queueCount = h('span', { class: 'count', id: 'queue-count' });
  const activeCount = h('span', { class: 'count', id: 'active-count' });
  const nodeCount = h('span', { class: 'count', id: 'node-count' });
  const updated = h('span', { class: 'muted small', id: 'updated' });
  // Hidden while there are no teams to show: a host without a quotas file, or a token in no team.
  const teamsCard = h('section', { class: 'card', id: 'teams', hidden: true }, h('h2', {}, 'Teams'), slot('teams-body'));

  main.replaceChildren(
    banner,
    h(
      'div',
      { class: 'grid' },
      h('section', { class: 'card', id: 'gpus' }, h('h2', {}, 'GPUs'), slot('gpus-body')),
      h('section', { class: 'card', id: 'queue' }, h('h2', {}, 'Queue ', queueCount), slot('queue-body')),
    ),
    teamsCard,
    h('section', { class: 'card', id: 'nodes' }, h('h2', {}, 'Nodes ', nodeCount), slot('nodes-body')),
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
  let again = false; // asked for while busy (a filter change, a drain): run once more after
  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      // One request at a time: polite to Gantry's per-client rate limits.
      // The drain buttons need to know whether the token is an admin's.
      await learnScopes();
      const gpus = await api('/v1/gpus', { signal });
      const nodes = await api('/v1/nodes', { signal });
      const teams = await api('/v1/teams', { signal });
      const queued = await api('/v1/jobs?state=queued&limit=500', { signal });
      const active = await api(`/v1/jobs?state=${ACTIVE.join(',')}&limit=500`, { signal });
      const recent = await api(`/v1/jobs?limit=${limit}${stateFilter ? `&state=${stateFilter}` : ''}`, { signal });
      if (signal.aborted) return;
      const byId = new Map([...active.items, ...recent.items, ...queued.items].map((j) => [j.id, j]));
      const q = [...queued.items].sort((a, b) => (a.position ?? 1e9) - (b.position ?? 1e9));
      document.getElementById('gpus-body').replaceChildren(gpuPanel(gpus, byId, () => void refresh()));
      document.getElementById('queue-body').replaceChildren(queuePanel(q));
      document.getElementById('teams-body').replaceChildren(teamPanel(teams));
      teamsCard.hidden = teams.items.length === 0;
      document.getElementById('nodes-body').replaceChildren(nodePanel(nodes, () => void refresh()));
      document.getElementById('active-body').replaceChildren(activePanel(active.items));
      document.getElementById('recent-body').replaceChildren(recentPanel(recent.items));
      queueCount.textContent = String(q.length);
      activeCount.textContent = String(active.items.length);
      nodeCount.textContent = String(nodes.items.length);
      more.hidden = recent.nextCursor === null || limit >= 500;
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      banner.hidden = true;
    } catch (err) {
      if (signal.aborted) return;
      banner.textContent = `Refresh failed: ${err.message}. Retrying…`;
      banner.hidden = false;
    } finally {
      busy = false;
      if (again && !signal.aborted) {
        again = false;
        void refresh();
      }
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
