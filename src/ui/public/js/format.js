// How durations and instants read on the page.
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

function ago(iso) {
  if (!iso) return '';
  return `${fmtDuration(Date.now() - Date.parse(iso))} ago`;
}

/** An instant as "… ago", the exact time in its tooltip; a dash when there is none. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso }, ago(iso));
}
