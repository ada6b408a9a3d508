// The overview's tables, each built afresh from the API's answers.
import { h } from '../dom.js';
import { fmtDuration, time } from '../format.js';
import { badge, jobHref, jobLink, nodeOf, ran, shortId, waited } from '../jobs.js';

function table(headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'empty muted' }, empty);
  const head = h(
    'tr',
    {},
    headers.map((x) => h('th', {}, x)),
  );
  return h('table', {}, h('thead', {}, head), h('tbody', {}, rows));
}

/** Each GPU, its allocated memory and the jobs holding it. */
export function gpuPanel(list, jobsById) {
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
  return table(['#', 'GPU', 'Memory allocated', 'Held by'], rows, 'No GPUs on this host: CPU jobs only.');
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
      h('td', { class: 'reason wrap' }, j.reason ?? ''),
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
      h('td', { class: 'reason', title: j.reason ?? '' }, j.reason ?? ''),
      h('td', {}, j.owner),
      h('td', { class: 'node' }, nodeOf(j)),
      h('td', {}, time(j.createdAt)),
      h('td', { class: 'num' }, fmtDuration(waited(j))),
      h('td', { class: 'num' }, fmtDuration(ran(j))),
    ),
  );
  return table(['Job', 'State', 'Exit', 'Reason', 'Owner', 'Node', 'Submitted', 'Waited', 'Ran'], rows, 'No jobs match.');
}
