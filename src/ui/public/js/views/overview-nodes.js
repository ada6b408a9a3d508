// The overview's Nodes card: every node of the fleet (one with the embedded
// store) from GET /v1/nodes, and, for an admin's token, the drain switch.
import { api } from '../api.js';
import { h, toast } from '../dom.js';
import { fmtDuration } from '../format.js';
import { renderHeader } from '../header.js';
import { dropScope, isAdmin } from '../scopes.js';

const stateBadge = (state) => h('span', { class: `badge node-${state}`, 'data-node-state': state }, state);

/** Drains or undrains a node, says how it went, then `done()` (the overview refreshes). */
async function setDrained(node, drained, button, done) {
  button.disabled = true;
  button.textContent = drained ? 'Draining…' : 'Undraining…';
  try {
    const n = await api(`/v1/nodes/${encodeURIComponent(node.name)}/${drained ? 'drain' : 'undrain'}`, { method: 'POST' });
    toast(
      n.drained
        ? `Node ${n.name} drained: its ${n.running} running job(s) finish, nothing new starts there.`
        : `Node ${n.name} takes new jobs again.`,
    );
  } catch (err) {
    if (err.status === 403) {
      dropScope('admin');
      renderHeader();
    }
    toast(`${drained ? 'Drain' : 'Undrain'} failed: ${err.message}`, 'error');
  } finally {
    done();
  }
}

/** A table of the nodes; `onChange` runs after a drain or undrain. */
export function nodePanel(list, onChange) {
  const admin = isAdmin();
  const rows = list.items.map((n) => {
    const held = n.gpus.filter((g) => g.allocated).length;
    const button = h(
      'button',
      {
        type: 'button',
        class: n.drained ? 'small-button' : 'small-button danger',
        'data-action': n.drained ? 'undrain' : 'drain',
        onclick: (e) => void setDrained(n, !n.drained, e.currentTarget, onChange),
      },
      n.drained ? 'Undrain' : 'Drain',
    );
    return h(
      'tr',
      { 'data-node': n.name, 'data-state': n.state, 'data-drained': String(n.drained) },
      h('td', {}, h('span', { class: 'mono' }, n.name), h('div', { class: 'small muted' }, `v${n.version}`)),
      h('td', {}, stateBadge(n.state)),
      h(
        'td',
        { 'data-field': 'drained' },
        n.drained ? h('span', { class: 'badge drained' }, 'drained') : h('span', { class: 'muted' }, 'no'),
      ),
      h(
        'td',
        { class: 'num', 'data-field': 'heartbeat', title: `lease ${n.leaseSeconds} s` },
        `${fmtDuration(n.heartbeatAgeSeconds * 1000)} ago`,
      ),
      h(
        'td',
        { class: 'num', 'data-field': 'gpus', title: admin ? '' : 'GPUs held by your jobs / all GPUs' },
        n.gpus.length === 0 ? h('span', { class: 'muted' }, 'none') : `${held} / ${n.gpus.length}`,
      ),
      h('td', { class: 'num', 'data-field': 'running' }, n.running),
      h(
        'td',
        { 'data-field': 'labels' },
        Object.keys(n.labels).length
          ? Object.entries(n.labels).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))
          : h('span', { class: 'muted' }, '—'),
      ),
      admin ? h('td', {}, button) : null,
    );
  });
  if (rows.length === 0) return h('p', { class: 'empty muted' }, 'No node has joined yet.');
  const headers = ['Node', 'State', 'Drained', 'Heartbeat', 'GPUs used', 'Running', 'Labels'];
  if (admin) headers.push('');
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((x) => h('th', {}, x)),
      ),
    ),
    h('tbody', {}, rows),
  );
}
