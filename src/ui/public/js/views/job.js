// One job's page: its details, attempts, GPU use, live log, result and
// spec, and a cancel button when the token may cancel.
import { api } from '../api.js';
import { h, main } from '../dom.js';
import { badge, jobLabel, shortId, TERMINAL } from '../jobs.js';
import { followLog } from '../log-stream.js';
import { may } from '../scopes.js';
import { sleep } from '../timing.js';
import { attemptsView } from './job-attempts.js';
import { cancelButton } from './job-cancel.js';
import { detailsList, resultView } from './job-details.js';
import { logCard } from './job-log.js';
import { telemetryCard } from './job-telemetry.js';

/** The spec as the page shows it: environment values hidden (they often carry credentials), their names kept. */
const shownSpec = (spec) =>
  spec.env ? { ...spec, env: Object.fromEntries(Object.keys(spec.env).map((name) => [name, '(hidden)'])) } : spec;

const back = () => h('a', { href: '#/', class: 'back' }, '← Overview');

export async function renderJob(id, signal) {
  document.title = `Gantry — job ${shortId(id)}`;
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let job;
  try {
    job = await api(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
  } catch (err) {
    if (signal.aborted) return;
    main.replaceChildren(
      back(),
      h(
        'section',
        { class: 'card' },
        h('h1', {}, 'Job not found'),
        h('p', { class: 'error' }, err.status === 404 ? `No job ${id} is visible to this token.` : err.message),
      ),
    );
    return;
  }
  if (signal.aborted) return;
  document.title = `Gantry — ${jobLabel(job)}`;

  const title = h('h1', { id: 'job-title' });
  const state = h('span', { id: 'job-state' });
  const details = h('div', { id: 'job-details' });
  const attempts = h('section', { class: 'card', id: 'attempts' }, h('h2', {}, 'Attempts'), h('div'));
  const result = h('section', { class: 'card', id: 'result', hidden: true }, h('h2', {}, 'Result'), h('div'));
  const gpu = telemetryCard(id, signal);
  function render() {
    title.replaceChildren(jobLabel(job), job.name ? h('span', { class: 'muted mono small id' }, job.id) : null);
    state.replaceChildren(badge(job.state));
    details.replaceChildren(detailsList(job));
    attempts.lastChild.replaceChildren(attemptsView(job));
    result.hidden = job.result === null || job.result === undefined;
    if (!result.hidden) result.lastChild.replaceChildren(resultView(job.result));
    cancel.hidden = !(may('cancel') && !TERMINAL.has(job.state));
  }
  function show(next) {
    const changed = next.state !== job.state || next.attempt !== job.attempt;
    job = next;
    render();
    if (changed) gpu.render(job);
  }
  const cancel = cancelButton(id, signal, { render, show });
  const log = logCard(id, jobLabel(job));
  render();

  main.replaceChildren(
    back(),
    h('div', { class: 'job-head' }, title, state, h('span', { class: 'spacer' }), cancel),
    h('div', { class: 'job-grid' }, h('section', { class: 'card' }, h('h2', {}, 'Details'), details), log.element),
    h('div', { class: 'job-grid' }, attempts, gpu.element),
    result,
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Spec'),
      h('pre', { class: 'spec', id: 'spec' }, JSON.stringify(shownSpec(job.spec), null, 2)),
    ),
  );
  void gpu.load(job);

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

  await followLog(id, signal, { connection: log.connection, lines: log.lines, status: show, telemetry: gpu.sample });
}
