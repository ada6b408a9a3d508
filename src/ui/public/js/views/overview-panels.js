// The overview's tables, each built afresh from the API's answers.
import { api } from '../api.js';
import { h, table, toast } from '../dom.js';
import { fmtDuration, prose, proseTitle, time } from '../format.js';
import { renderHeader } from '../header.js';
import { badge, jobHref, jobLink, nodeOf, ran, shortId, waited } from '../jobs.js';
import { dropScope, isAdmin } from '../scopes.js';

/** Drains or undrains a GPU, says how it went, then `done()` (the overview refreshes). */
async function setGpuDrained(g, drained, button, done) {
  button.disabled = true;
  button.textContent = drained ? 'Draining…' : 'Undraining…';
  try {
    const path = `/v1/gpus/${encodeURIComponent(g.uuid)}/${drained ? 'drain' : 'undrain'}`;
    const back = await api(path, { method: 'POST' });
    toast(drained ? `GPU ${back.index} drained: a job on it finishes, no new job gets it.` : `GPU ${back.index} is in service again.`);
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

/** A card's health: its state, and for one out of service why, since when and (drained) by whom. */
function healthCell(g, admin, onChange) {
  const { state, code, reason, since, by } = g.health;
  const out = state !== 'healthy';
  const button = admin
    ? h(
        'button',
        {
          type: 'button',
          class: out ? 'small-button' : 'small-button danger',
          'data-action': out ? 'undrain' : 'drain',
          onclick: (e) => void setGpuDrained(g, !out, e.currentTarget, onChange),
        },
        out ? 'Undrain' : 'Drain',
      )
    : null;
  return h(
    'td',
    { 'data-field': 'health', 'data-health': state },
    h('span', { class: `badge gpu-${state}`, title: code ?? '' }, state),
    out ? h('div', { class: 'small', 'data-field': 'health-reason' }, reason ?? code) : null,
    out ? h('div', { class: 'small muted' }, 'since ', time(since), by ? ` · by ${by}` : null) : null,
    button ? h('div', {}, button) : null,
  );
}

/** Each GPU, its health, its allocated memory and the jobs holding it; `onChange` runs after a drain or undrain. */
export function gpuPanel(list, jobsById, onChange = () => {}) {
  const admin = isAdmin();
  const rows = list.items.map((g) => {
    const pct = g.memoryMiB > 0 ? Math.min(100, Math.round((g.allocatedMemoryMiB / g.memoryMiB) * 100)) : 0;
    return h(
      'tr',
      { 'data-gpu': g.uuid },
      h('td', { class: 'num' }, g.index),
      h('td', {}, h('div', {}, g.name), h('div', { class: 'mono muted small', title: g.uuid }, g.uuid)),
      healthCell(g, admin, onChange),
      h(
        'td',
        { class: 'mem' },
        h(
          'div',
          { class: 'bar', title: `${pct}% allocated` },
          h('div', { class: `fill${pct >= 100 ? ' full' : ''}`, style: `width:${pct}%` }),
        ),
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
                j ? jobLink(j) : h('a', { href: jobHref(x.jobId), class: 'mono' }, shortId(x.jobId)),
                j ? [' ', h('span', { class: 'muted small' }, j.owner)] : null,
                h('span', { class: 'muted small' }, x.memoryMiB === null ? ' · exclusive' : ` · ${x.memoryMiB.toLocaleString()} MiB`),
              );
            }),
      ),
    );
  });
  return table(['#', 'GPU', 'Health', 'Memory allocated', 'Held by'], rows, 'No GPUs on this host: CPU jobs only.');
}

/** Queued jobs in queue order, with what each waits for. */
export function queuePanel(queued) {
  const rows = queued.map((j) =>
    h(
      'tr',
      { 'data-job': j.id },
      h('td', { class: 'num' }, j.position === null ? '—' : j.position + 1),
      h('td', {}, jobLink(j)),
      h('td', { class: 'num' }, j.spec.priority ?? 0),
      h('td', {}, j.owner),
      h('td', {}, fmtDuration(waited(j))),
      h('td', { class: 'reason wrap' }, prose(j.reason)),
    ),
  );
  return table(['Pos.', 'Job', 'Priority', 'Owner', 'Waiting', 'Waiting for'], rows, 'The queue is empty.');
}

/** Jobs pulling, starting or running, with their GPUs. */
export function activePanel(active) {
  const rows = active.map((j) =>
    h(
      'tr',
      { 'data-job': j.id },
      h('td', {}, jobLink(j)),
      h(
        'td',
        {},
        badge(j.state),
        j.pull ? h('div', { class: 'small muted' }, j.pull.status, j.pull.progress ? ` ${j.pull.progress}` : '') : null,
      ),
      h('td', {}, j.owner),
      h('td', { class: 'node' }, nodeOf(j)),
      h(
        'td',
        { class: 'small mono' },
        j.gpus.length ? j.gpus.map((u) => h('div', { title: u }, u.slice(0, 12))) : h('span', { class: 'muted' }, 'none'),
      ),
      h('td', {}, time(j.startedAt)),
      h('td', {}, fmtDuration(ran(j))),
    ),
  );
  return table(['Job', 'State', 'Owner', 'Node', 'GPUs', 'Started', 'Running for'], rows, 'Nothing is running.');
}

/** The newest jobs in any state (or the one filtered on). */
export function recentPanel(items) {
  const rows = items.map((j) =>
    h(
      'tr',
      { 'data-job': j.id, 'data-state': j.state },
      h('td', {}, jobLink(j)),
      h('td', {}, badge(j.state)),
      h('td', { class: 'num' }, j.exitCode ?? ''),
      h('td', { class: 'reason', title: proseTitle(j.reason) }, prose(j.reason)),
      h('td', {}, j.owner),
      h('td', { class: 'node' }, nodeOf(j)),
      h('td', {}, time(j.createdAt)),
      h('td', { class: 'num' }, fmtDuration(waited(j))),
      h('td', { class: 'num' }, fmtDuration(ran(j))),
    ),
  );
  return table(['Job', 'State', 'Exit', 'Reason', 'Owner', 'Node', 'Submitted', 'Waited', 'Ran'], rows, 'No jobs match.');
}

/** "used / limit", or the use alone when no limit is set. */
const ofLimit = (used, limit) => (limit === null ? String(used) : `${used} / ${limit}`);

/** GPU-hours, from fair share's decayed GPU-seconds. */
const gpuHours = (seconds) => `${(seconds / 3600).toFixed(seconds < 36 ? 2 : 1)} GPU-h`;

/** Each team's use now against its quota (GANTRY_QUOTAS_FILE), and its fair-share standing. */
export function teamPanel(list) {
  const rows = list.items.map((t) => {
    const { limits: l, use: u } = t;
    const pct = l.gpus ? Math.min(100, Math.round((u.gpus / l.gpus) * 100)) : 0;
    return h(
      'tr',
      { 'data-team': t.name },
      h('td', {}, h('div', {}, t.name), h('div', { class: 'small muted' }, t.owners.join(', '))),
      h(
        'td',
        { 'data-field': 'gpus' },
        l.gpus === null
          ? null
          : h(
              'div',
              { class: 'bar', title: `${pct}% of its GPUs` },
              h('div', { class: `fill${pct >= 100 ? ' full' : ''}`, style: `width:${pct}%` }),
            ),
        h('div', { class: 'small' }, ofLimit(u.gpus, l.gpus), l.borrowGpus ? ` (+${l.borrowGpus})` : ''),
      ),
      h('td', { class: 'num', 'data-field': 'running' }, ofLimit(u.runningJobs, l.maxRunning)),
      h('td', { class: 'num', 'data-field': 'queued' }, ofLimit(u.queuedJobs, l.maxQueued)),
      h('td', { class: 'num', 'data-field': 'borrowed' }, u.borrowedGpus),
      h(
        'td',
        { class: 'num', 'data-field': 'fair-share', title: `rank ${t.fairShare.rank.toFixed(1)} (use over share ${l.share})` },
        gpuHours(t.fairShare.gpuSeconds),
      ),
    );
  });
  return table(['Team', 'GPUs held / nominal (+borrow)', 'Running / max', 'Queued / max', 'Borrowed', 'Recent use'], rows, 'No teams.');
}
