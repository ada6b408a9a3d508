// How durations and instants read on the page: instants relative and in
// the reader's own time zone ("in 23 h 59 min", "5 min ago"), the exact
// local time in their tooltip.
import { h } from './dom.js';

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  const s = Math.max(0, ms / 1000);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${String(m % 60).padStart(2, '0')} m`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

/** A span of time as a person says it: "45 s", "12 min", "23 h 59 min", "3 d 4 h". */
function spoken(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return m % 60 ? `${hr} h ${m % 60} min` : `${hr} h`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

/** "in 23 h 59 min" for a time to come, "5 min ago" for one past, "now" within a second. */
export function relative(iso, now = Date.now()) {
  const diff = Date.parse(iso) - now;
  if (Math.abs(diff) < 1000) return 'now';
  return diff > 0 ? `in ${spoken(diff)}` : `${spoken(diff)} ago`;
}

/** The exact instant in the reader's time zone, with the zone's name. */
export function exact(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' });
}

/** An instant, relative, the exact local time in its tooltip; a dash when there is none. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: exact(iso) }, relative(iso));
}

const ISO_INSTANT = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g;

/** A sentence from Gantry as plain text (a tooltip), each ISO instant in it as the exact local time. */
export function proseTitle(text) {
  return text ? text.replace(ISO_INSTANT, (iso) => exact(iso)) : '';
}

/** A sentence from Gantry (a waiting reason) with each ISO instant in it shown as `time` shows one. */
export function prose(text) {
  if (!text) return '';
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(ISO_INSTANT)) {
    parts.push(text.slice(last, m.index), time(m[0]));
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

/** A clock time of day in the reader's zone, for chart axes (with seconds for a short span). */
export const clock = (ms, seconds = false) =>
  new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', ...(seconds ? { second: '2-digit' } : {}) });
