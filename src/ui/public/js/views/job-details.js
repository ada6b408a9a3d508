// The Details card of a job page.
import { h } from '../dom.js';
import { fmtDuration, time } from '../format.js';
import { badge, ran, waited } from '../jobs.js';

const none = () => h('span', { class: 'muted' }, '—');

export function detailsList(job) {
  const rows = [
    ['State', badge(job.state)],
    job.state === 'queued' ? ['Position', job.position === null ? '—' : `${job.position + 1} in the queue`] : null,
    ['Reason', job.reason ?? none()],
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
    // A result file's JSON document, or the last stdout line.
    [
      'Result',
      job.result === null ? none() : h('span', { class: 'mono' }, typeof job.result === 'string' ? job.result : JSON.stringify(job.result)),
    ],
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
