// A job's states, timings and the small pieces every view shows it with.
import { h } from './dom.js';

export const STATES = ['queued', 'pulling', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'];
export const ACTIVE = ['pulling', 'starting', 'running'];
export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

/** Time from submission until the job left the queue (or until now). */
export function waited(job) {
  const end = job.startedAt ?? (job.state === 'queued' || !TERMINAL.has(job.state) ? null : job.finishedAt);
  return (end ? Date.parse(end) : Date.now()) - Date.parse(job.createdAt);
}

/** Time the container ran, if it started. */
export function ran(job) {
  if (!job.startedAt) return null;
  return (job.finishedAt ? Date.parse(job.finishedAt) : Date.now()) - Date.parse(job.startedAt);
}

export const shortId = (id) => id.slice(0, 8);
export const jobLabel = (job) => job.name ?? shortId(job.id);
export const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;
export const jobLink = (job) => h('a', { href: jobHref(job.id), title: job.id, class: 'job-link' }, jobLabel(job));
export const badge = (state) => h('span', { class: `badge state-${state}`, 'data-state': state }, state.replace('_', ' '));

/** Where a job runs or ran: its node (a dash before a node took it), and its attempt when it is a retry. */
export const nodeOf = (job) => [
  job.node ? h('span', { class: 'mono', 'data-node': job.node }, job.node) : h('span', { class: 'muted' }, '—'),
  job.attempt > 1 ? h('span', { class: 'small muted', 'data-attempt': job.attempt }, ` · attempt ${job.attempt}`) : null,
];
