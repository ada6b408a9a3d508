// The audit trail (admins): who changed what and how it ended, newest
// first, with GET /v1/audit's filters kept in the address, and each record
// linked to the job, node or card it acted on.
import { api } from '../api.js';
import { h, main, table } from '../dom.js';
import { prose, time } from '../format.js';
import { jobHref, shortId } from '../jobs.js';

const ACTIONS = ['job.submit', 'job.cancel', 'node.drain', 'node.undrain', 'gpu.drain', 'gpu.undrain', 'gpu.smoke', 'config.reload'];
const OUTCOMES = ['ok', 'refused', 'failed'];
const FILTERS = ['actor', 'action', 'target', 'outcome', 'from', 'to'];

const nodeLink = (name) => h('a', { href: `#/gpus?node=${encodeURIComponent(name)}`, class: 'mono', 'data-node': name }, name);

/** What a record acted on, as a link to it: a job's page, or the node or card on the GPUs page. */
export function targetLink(r) {
  const t = r.target;
  if (!t) return h('span', { class: 'muted' }, '—');
  if (t.startsWith('GPU-')) return h('a', { href: `#/gpus?gpu=${encodeURIComponent(t)}`, class: 'mono', title: t }, t.slice(0, 12));
  if (r.action.startsWith('job.')) return h('a', { href: jobHref(t), class: 'mono', title: t, 'data-job': t }, shortId(t));
  if (r.action.startsWith('node.')) return nodeLink(t);
  return h('span', { class: 'mono' }, t);
}

function row(r) {
  const detail = [r.detail.fields?.length ? `fields: ${r.detail.fields.join(', ')}` : null, r.detail.signal, r.detail.error].filter(
    Boolean,
  );
  return h(
    'tr',
    { 'data-seq': r.seq, 'data-action': r.action, 'data-outcome': r.outcome },
    h('td', {}, time(r.at)),
    h('td', { class: 'mono' }, r.action),
    h('td', {}, r.actor ?? h('span', { class: 'muted' }, '—')),
    h('td', { 'data-field': 'target' }, targetLink(r)),
    h(
      'td',
      {},
      h('span', { class: `badge outcome-${r.outcome}` }, r.outcome),
      r.status ? h('span', { class: 'small muted' }, ` ${r.status}`) : null,
    ),
    h('td', {}, nodeLink(r.node)),
    h('td', { class: 'small wrap' }, prose(detail.join(' · ')) || h('span', { class: 'muted' }, '—')),
  );
}

/** A datetime-local value (the reader's zone) as RFC 3339, or undefined. */
const rfc3339 = (local) => (local ? new Date(local).toISOString() : undefined);

export function renderAudit(signal, query) {
  document.title = 'Gantry — audit';
  const input = (name, attrs) => h('input', { id: `audit-${name}`, name, value: query.get(name) ?? '', ...attrs });
  const select = (name, options) =>
    h(
      'select',
      { id: `audit-${name}`, name },
      h('option', { value: '' }, `any ${name}`),
      options.map((o) => h('option', { value: o, selected: query.get(name) === o }, o)),
    );
  const fields = {
    actor: input('actor', { placeholder: 'actor (owner)' }),
    action: select('action', ACTIONS),
    target: input('target', { placeholder: 'job id, node or GPU' }),
    outcome: select('outcome', OUTCOMES),
    from: input('from', { type: 'datetime-local', 'aria-label': 'from' }),
    to: input('to', { type: 'datetime-local', 'aria-label': 'to' }),
  };
  const form = h(
    'form',
    {
      id: 'audit-filters',
      class: 'filters',
      onsubmit: (e) => {
        e.preventDefault();
        const q = new URLSearchParams();
        for (const k of FILTERS) if (fields[k].value) q.set(k, fields[k].value);
        location.hash = `#/audit?${q}`;
      },
    },
    FILTERS.map((k) => fields[k]),
    h('button', { type: 'submit', id: 'audit-apply' }, 'Filter'),
  );
  const body = h('div', { id: 'audit-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const more = h('button', { type: 'button', class: 'link', id: 'audit-more', hidden: true }, 'Older records');
  main.replaceChildren(h('h1', {}, 'Audit trail'), h('section', { class: 'card' }, form, body, h('div', { class: 'center' }, more)));

  const params = new URLSearchParams({ limit: '100' });
  for (const k of ['actor', 'action', 'target', 'outcome']) if (query.get(k)) params.set(k, query.get(k));
  for (const k of ['from', 'to']) if (query.get(k)) params.set(k, rfc3339(query.get(k)));
  const rows = [];
  async function load(cursor) {
    try {
      const page = await api(`/v1/audit?${params}${cursor ? `&cursor=${cursor}` : ''}`, { signal });
      if (signal.aborted) return;
      rows.push(...page.items.map(row));
      body.replaceChildren(table(['When', 'Action', 'Actor', 'Target', 'Outcome', 'Node', 'Detail'], rows, 'No record matches.'));
      more.hidden = page.nextCursor === null;
      more.onclick = () => void load(page.nextCursor);
    } catch (err) {
      if (signal.aborted) return;
      body.replaceChildren(
        h(
          'p',
          { class: 'error' },
          err.status === 403 ? 'The audit trail is for admin tokens only.' : `Could not read the audit trail: ${err.message}`,
        ),
      );
    }
  }
  void load(null);
}
