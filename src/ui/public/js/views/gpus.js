// GPUs and the queue over time: per card its utilisation and memory for
// the last hours with the jobs that held it marked (another owner's job
// unnamed, for a token that is no admin's), the queue's length and waiting
// times, and the nodes now. Refreshed every ten seconds while visible.
import { api } from '../api.js';
import { lineChart } from '../chart.js';
import { h, main } from '../dom.js';
import { clock, fmtDuration } from '../format.js';
import { jobHref, shortId } from '../jobs.js';
import { sleep, whenVisible } from '../timing.js';
import { nodePanel } from './overview-nodes.js';

const REFRESH_MS = 10_000;
const OTHER = "another owner's job";
/** The windows offered, in hours: the cards' rings span four hours at the default sample period. */
const WINDOWS = new Map([
  [0.25, 'last 15 min'],
  [1, 'last 1 h'],
  [4, 'last 4 h'],
]);

/** Each holder's runs of consecutive points, as spans [{from, to, jobId, label}]. */
export function holderSpans(points, spacingMs, names) {
  const open = new Map();
  const spans = [];
  const close = (key, until) => {
    const o = open.get(key);
    spans.push({ from: o.from, to: until, jobId: o.jobId, label: o.jobId ? (names.get(o.jobId) ?? shortId(o.jobId)) : OTHER });
    open.delete(key);
  };
  for (const p of points) {
    const t = Date.parse(p.time);
    const here = new Set(p.holders.map((x) => x.jobId ?? ''));
    for (const [key, o] of open) if (!here.has(key) || t - o.last > 3 * spacingMs) close(key, o.last + spacingMs);
    for (const x of p.holders) {
      const key = x.jobId ?? '';
      const o = open.get(key);
      if (o) o.last = t;
      else open.set(key, { from: t, last: t, jobId: x.jobId });
    }
  }
  for (const [key, o] of open) close(key, o.last + spacingMs);
  return spans.sort((a, b) => a.from - b.from);
}

function cardSection(card, hist, names, from, to) {
  const spacing = hist.spacingSeconds * 1000;
  const spans = holderSpans(card.points, spacing, names);
  const series = (key) => card.points.map((p) => [Date.parse(p.time), p[key]]);
  const common = { from, to, spans, gapMs: 3 * spacing, height: 120 };
  return h(
    'section',
    { class: 'card', 'data-gpu': card.uuid, id: `gpu-${card.index}` },
    h(
      'h2',
      {},
      `GPU ${card.index} `,
      h('span', { class: 'muted small' }, card.name),
      ' ',
      h('span', { class: 'mono muted small' }, card.uuid),
    ),
    card.points.length === 0
      ? h('p', { class: 'muted empty' }, 'No sample in this window (cards are sampled while a GPU job runs here).')
      : h(
          'div',
          { class: 'chart-pair' },
          lineChart({
            ...common,
            label: `GPU ${card.index} utilisation`,
            unit: '%',
            yMax: 100,
            series: [{ name: 'utilisation', cls: 'util', points: series('utilizationPct') }],
          }),
          lineChart({
            ...common,
            label: `GPU ${card.index} memory`,
            unit: ' MiB',
            yMax: card.memoryMiB,
            series: [{ name: 'memory', cls: 'mem', points: series('memoryUsedMiB') }],
          }),
        ),
    h(
      'ul',
      { class: 'holders small' },
      spans.map((x) =>
        h(
          'li',
          { 'data-holder': x.jobId ?? 'hidden' },
          x.jobId ? h('a', { href: jobHref(x.jobId), class: 'job-link' }, x.label) : h('span', { class: 'muted' }, x.label),
          ` ${clock(x.from)}–${clock(x.to)} (${fmtDuration(x.to - x.from)})`,
        ),
      ),
    ),
  );
}

function queueSection(q, from, to) {
  const series = (key, scale = 1) => q.points.map((p) => [Date.parse(p.time), p[key] / scale]);
  const gapMs = 3 * q.spacingSeconds * 1000;
  const last = q.points.at(-1);
  return h(
    'section',
    { class: 'card', id: 'queue-history' },
    h('h2', {}, 'Queue over time'),
    last
      ? h(
          'p',
          { class: 'small', 'data-field': 'queue-now' },
          `now ${last.queued} queued (${last.gpuQueued} for GPUs), longest wait ${fmtDuration(last.longestWaitSeconds * 1000)}`,
        )
      : h('p', { class: 'muted' }, 'No point yet.'),
    h(
      'div',
      { class: 'chart-pair' },
      lineChart({
        label: 'Jobs queued',
        from,
        to,
        gapMs,
        height: 120,
        series: [
          { name: 'queued', cls: 'util', points: series('queued') },
          { name: 'for GPUs', cls: 'mem', points: series('gpuQueued') },
        ],
      }),
      lineChart({
        label: 'Waiting time (minutes)',
        unit: ' min',
        from,
        to,
        gapMs,
        height: 120,
        series: [
          { name: 'longest wait', cls: 'power', points: series('longestWaitSeconds', 60) },
          { name: 'mean wait', cls: 'util', points: series('meanWaitSeconds', 60) },
        ],
      }),
    ),
  );
}

export function renderGpus(signal, query) {
  document.title = 'Gantry — GPUs and queue';
  const hours = WINDOWS.has(Number(query.get('hours'))) ? Number(query.get('hours')) : 4;
  const pick = h(
    'select',
    { id: 'hours', 'aria-label': 'Window', onchange: () => (location.hash = `#/gpus?hours=${pick.value}`) },
    [...WINDOWS].map(([n, label]) => h('option', { value: n, selected: n === hours }, label)),
  );
  const body = h('div', { id: 'gpus-history' }, h('p', { class: 'muted' }, 'Loading…'));
  const nodes = h('section', { class: 'card', id: 'nodes' }, h('h2', {}, 'Nodes'), h('div'));
  const banner = h('p', { class: 'error', hidden: true });
  main.replaceChildren(
    h('div', { class: 'card-head' }, h('h1', {}, 'GPUs and queue over time'), h('span', { class: 'spacer' }), pick),
    banner,
    body,
    nodes,
  );

  async function refresh() {
    try {
      const gpus = await api(`/v1/gpus/history?hours=${hours}`, { signal });
      const queue = await api(`/v1/queue/history?hours=${hours}`, { signal });
      const jobs = await api('/v1/jobs?limit=500', { signal });
      const nodeList = await api('/v1/nodes', { signal });
      if (signal.aborted) return;
      const names = new Map(jobs.items.map((j) => [j.id, j.name ?? shortId(j.id)]));
      // The charts start at the window's start, or at the first point kept when the node has been up for less.
      const to = Date.now();
      const kept = [...gpus.items.flatMap((c) => c.points.slice(0, 1)), ...queue.points.slice(0, 1)].map((p) => Date.parse(p.time));
      const from = Math.max(to - hours * 3_600_000, Math.min(to - 60_000, ...kept));
      body.replaceChildren(...gpus.items.map((c) => cardSection(c, gpus, names, from, to)), queueSection(queue, from, to));
      if (gpus.items.length === 0) body.prepend(h('p', { class: 'muted' }, 'No GPUs on this node.'));
      nodes.lastChild.replaceChildren(nodePanel(nodeList, () => void refresh()));
      const wanted = query.get('node') ?? query.get('gpu');
      const row = wanted && document.querySelector(`[data-node="${CSS.escape(wanted)}"], [data-gpu="${CSS.escape(wanted)}"]`);
      if (row) row.classList.add('highlight');
      banner.hidden = true;
    } catch (err) {
      if (signal.aborted) return;
      banner.textContent = `Refresh failed: ${err.message}. Retrying…`;
      banner.hidden = false;
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
