// A job's attempts as a timeline: each one's wait in the queue, its run on
// a node and its GPUs, and how it ended (with the cause a retry rule
// names). Drawn as a bar of spans, and said again as a list.
import { s } from '../chart.js';
import { h } from '../dom.js';
import { fmtDuration, prose, time } from '../format.js';
import { TERMINAL } from '../jobs.js';

const ms = (iso) => (iso ? Date.parse(iso) : null);

/** The attempts as spans: the ended ones from `attempts`, and the current one if it has not ended. */
export function attemptSpans(job, now = Date.now()) {
  const spans = [];
  let queuedFrom = ms(job.createdAt);
  const ended = [...job.attempts].sort((a, b) => a.attempt - b.attempt);
  for (const a of ended) {
    const start = ms(a.startedAt);
    const end = ms(a.finishedAt);
    spans.push({ attempt: a.attempt, kind: 'queued', from: queuedFrom, to: start ?? end });
    if (start !== null) spans.push({ attempt: a.attempt, kind: a.outcome, from: start, to: end, record: a });
    queuedFrom = end;
  }
  if (!ended.some((a) => a.attempt === job.attempt)) {
    const start = ms(job.startedAt);
    const end = TERMINAL.has(job.state) ? (ms(job.finishedAt) ?? now) : now;
    spans.push({ attempt: job.attempt, kind: 'queued', from: queuedFrom, to: start ?? end });
    if (start !== null) spans.push({ attempt: job.attempt, kind: TERMINAL.has(job.state) ? job.state : 'running', from: start, to: end });
  }
  return spans.filter((x) => x.to >= x.from);
}

function bar(spans) {
  const from = spans[0].from;
  const to = Math.max(from + 1, ...spans.map((x) => x.to));
  const W = 640;
  const x = (t) => 4 + ((t - from) / (to - from)) * (W - 8);
  const summary = spans.map((x2) => `attempt ${x2.attempt} ${x2.kind} ${fmtDuration(x2.to - x2.from)}`).join(', ');
  return s(
    'svg',
    { class: 'chart timeline', viewBox: `0 0 ${W} 30`, role: 'img', 'aria-label': `Attempts over time: ${summary}` },
    spans.map((x2) =>
      s(
        'rect',
        { class: `seg seg-${x2.kind}`, x: x(x2.from), y: 4, height: 22, width: Math.max(2, x(x2.to) - x(x2.from)) },
        s('title', {}, `attempt ${x2.attempt}: ${x2.kind.replace('_', ' ')} for ${fmtDuration(x2.to - x2.from)}`),
      ),
    ),
  );
}

/** One attempt, in words: where it ran, how long it waited and ran, how it ended. */
function item(job, n, spans) {
  const a = job.attempts.find((r) => r.attempt === n);
  const queued = spans.find((x) => x.attempt === n && x.kind === 'queued');
  const run = spans.find((x) => x.attempt === n && x.kind !== 'queued');
  const node = a ? a.node : job.node;
  const gpus = a ? a.gpus : job.gpus;
  const state = a ? a.outcome : job.state;
  return h(
    'li',
    { 'data-attempt': n, 'data-outcome': state },
    h('strong', {}, `Attempt ${n}`),
    ' · ',
    h('span', { class: `badge state-${state}` }, state.replace('_', ' ')),
    a?.cause ? [' ', h('span', { class: 'tag', 'data-field': 'cause' }, a.cause)] : null,
    a?.retried ? h('span', { class: 'small muted' }, ' · retried') : null,
    h(
      'div',
      { class: 'small' },
      node ? ['on ', h('span', { class: 'mono', 'data-field': 'attempt-node' }, node)] : h('span', { class: 'muted' }, 'no node yet'),
      gpus.length ? [' · GPUs ', gpus.map((u, i) => [i ? ', ' : '', h('span', { class: 'mono', title: u }, u.slice(0, 12))])] : null,
    ),
    h(
      'div',
      { class: 'small muted' },
      queued ? `waited ${fmtDuration(queued.to - queued.from)}` : null,
      run ? ` · ran ${fmtDuration(run.to - run.from)}` : null,
      a ? [' · ended ', time(a.finishedAt)] : null,
      a?.exitCode !== null && a?.exitCode !== undefined ? ` · exit ${a.exitCode}` : null,
    ),
    a?.reason ? h('div', { class: 'small wrap' }, prose(a.reason)) : null,
  );
}

/** The Attempts card's body. */
export function attemptsView(job) {
  const spans = attemptSpans(job);
  if (spans.length === 0) return h('p', { class: 'muted' }, 'No attempt yet.');
  const numbers = [...new Set(spans.map((x) => x.attempt))];
  return h(
    'div',
    { id: 'attempts-body' },
    bar(spans),
    h(
      'div',
      { class: 'legend small muted' },
      ['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((k) => h('span', {}, h('i', { class: `seg-${k}` }), k)),
    ),
    h(
      'ol',
      { class: 'attempts' },
      numbers.map((n) => item(job, n, spans)),
    ),
  );
}
