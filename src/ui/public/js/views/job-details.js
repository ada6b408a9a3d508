// The Details card of a job page.
import { h } from '../dom.js';
import { fmtDuration, prose, time } from '../format.js';
import { badge, ran, waited } from '../jobs.js';

const none = () => h('span', { class: 'muted' }, '—');

export function detailsList(job) {
  const rows = [
    ['State', badge(job.state)],
    job.state === 'queued' ? ['Position', job.position === null ? '—' : `${job.position + 1} in the queue`] : null,
    ['Reason', job.reason ? prose(job.reason) : none()],
    ['Exit code', job.exitCode ?? none()],
    ['Owner', job.owner],
    ['Node', job.node ? h('span', { class: 'mono' }, job.node) : h('span', { class: 'muted' }, 'none yet')],
    ['Attempt', job.attempt],
    ['Priority', job.spec.priority ?? 0],
    ['Submitted', time(job.createdAt)],
    ['Started', time(job.startedAt)],
    ['Finished', time(job.finishedAt)],
    ['Waited', fmtDuration(waited(job))],
    ['Ran', ran(job) === null ? none() : fmtDuration(ran(job))],
    ['GPUs', job.gpus.length ? job.gpus.map((u) => h('div', { class: 'mono' }, u)) : h('span', { class: 'muted' }, 'none')],
    job.pull ? ['Pull', `${job.pull.status}${job.pull.progress ? ` ${job.pull.progress}` : ''}`] : null,
    [
      'Labels',
      Object.keys(job.labels).length ? Object.entries(job.labels).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`)) : none(),
    ],
    ['Job id', h('span', { class: 'mono' }, job.id)],
    ['Request id', job.requestId ? h('span', { class: 'mono' }, job.requestId) : none()],
  ].filter(Boolean);
  return h(
    'dl',
    { class: 'details' },
    rows.map(([k, v]) => [h('dt', {}, k), h('dd', { 'data-field': k.toLowerCase().replace(' ', '-') }, v)]),
  );
}

/** The job's result as text: a string as it is, structured data as indented JSON (shown as text, never as markup). */
export function resultView(result) {
  const text = typeof result === 'string' ? result : JSON.stringify(result, null, 2);
  return h('pre', { class: 'spec', id: 'result-text', 'data-kind': typeof result }, text);
}
