// Small SVG charts, drawn here rather than by a charting library: a line
// chart over time (with spans marked under it and a reference line) and
// horizontal bars. No dependency, no inline style (colours come from
// style.css classes), so the page's strict CSP holds. Each chart is an
// image with a text alternative (role="img", <title> and <desc> saying
// the figures), and the views show the same numbers as text or a table.
import { clock } from './format.js';

const NS = 'http://www.w3.org/2000/svg';

/** Builds an SVG element; children are text or nodes (never parsed as markup). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== null && v !== undefined && v !== false) el.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

let ids = 0;
const W = 640;
const PAD = { l: 76, r: 10, t: 16, b: 22 };

/** A figure with its unit: one decimal under 10, two significant digits under 0.1 (so a small value never reads 0). */
function fmt(v, unit) {
  if (v === null || v === undefined) return '—';
  const n = v > 0 && v < 0.1 ? Number(v.toPrecision(2)) : Number(v.toFixed(v < 10 ? 1 : 0));
  return `${n.toLocaleString(undefined, { maximumSignificantDigits: 6 })}${unit}`;
}

/** Last, peak and mean of a series, as words. */
function summary(series, unit) {
  const vs = series.points.map((p) => p[1]).filter((v) => v !== null);
  if (vs.length === 0) return `${series.name}: no samples`;
  const mean = vs.reduce((a, b) => a + b, 0) / vs.length;
  return `${series.name}: last ${fmt(vs.at(-1), unit)}, peak ${fmt(Math.max(...vs), unit)}, mean ${fmt(mean, unit)}`;
}

/**
 * A line chart over [from, to] (epoch ms). `series`: [{name, cls, points:
 * [[ms, value|null]]}]; a gap longer than `gapMs` (or a null) breaks the
 * line. `spans`: [{from, to, label, cls}] drawn as bands under the lines
 * (the jobs that held a card). `ref`: {value, label} a dashed line (a
 * declared memory). `yMax`: the top of the scale (else the data's).
 */
export function lineChart({ label, unit = '', from, to, series, spans = [], ref = null, yMax = null, gapMs = Infinity, height = 150 }) {
  const H = height;
  const id = `chart-${++ids}`;
  const values = series.flatMap((x) => x.points.map((p) => p[1])).filter((v) => v !== null);
  const top = yMax ?? Math.max(1, ref?.value ?? 0, ...values) * 1.1;
  const span = Math.max(1, to - from);
  const x = (t) => PAD.l + ((t - from) / span) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (Math.min(v, top) / top) * (H - PAD.t - PAD.b);
  const grid = [0, top / 2, top].map((v) => [
    s('line', { class: 'grid', x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }),
    s('text', { class: 'axis', x: PAD.l - 4, y: y(v) + 4, 'text-anchor': 'end' }, fmt(v, unit)),
  ]);
  const seconds = span < 15 * 60_000;
  const ticks = [from, from + span / 2, to].map((t, i) =>
    s('text', { class: 'axis', x: x(t), y: H - 6, 'text-anchor': ['start', 'middle', 'end'][i] }, clock(t, seconds)),
  );
  const bands = spans.map((b, i) => {
    const width = Math.max(2, x(Math.min(b.to, to)) - x(Math.max(b.from, from)));
    return s(
      'g',
      { class: `span ${b.cls ?? `span-${i % 6}`}` },
      s('rect', { x: x(Math.max(b.from, from)), y: PAD.t, width, height: H - PAD.t - PAD.b }),
      // A band too narrow for its name keeps it in its tooltip and in the chart's description.
      width >= 60 ? s('text', { class: 'span-label', x: x(Math.max(b.from, from)) + 3, y: PAD.t + 11 }, b.label) : null,
      s('title', {}, b.label),
    );
  });
  const lines = series.map((ser) => {
    let d = '';
    let prev = null;
    for (const [t, v] of ser.points) {
      if (v === null) {
        prev = null;
        continue;
      }
      d += `${prev === null || t - prev > gapMs ? 'M' : 'L'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      prev = t;
    }
    return s('path', { class: `line ${ser.cls ?? ''}`, d: d || 'M0,0' });
  });
  const refLine = ref
    ? [
        s('line', { class: 'ref', x1: PAD.l, x2: W - PAD.r, y1: y(ref.value), y2: y(ref.value) }),
        s('text', { class: 'ref-label', x: W - PAD.r - 2, y: y(ref.value) - 3, 'text-anchor': 'end' }, ref.label),
      ]
    : [];
  const desc = [
    ...series.map((x2) => summary(x2, unit)),
    ref ? ref.label : null,
    spans.length ? `held by ${spans.map((b) => b.label).join(', ')}` : null,
  ]
    .filter(Boolean)
    .join('; ');
  return s(
    'svg',
    { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d`, 'data-chart': label },
    s('title', { id: `${id}-t` }, label),
    s('desc', { id: `${id}-d` }, desc),
    s(
      'text',
      { class: 'chart-title', x: W - PAD.r, y: PAD.t - 4, 'text-anchor': 'end', 'aria-hidden': 'true' },
      label,
      series.length > 1 ? series.map((ser) => s('tspan', { class: `key ${ser.cls ?? ''}` }, `  ■ ${ser.name}`)) : null,
    ),
    bands,
    grid,
    ticks,
    refLine,
    lines,
  );
}

/** Horizontal bars, one per row: [{label, value, cls}], longest first as given. */
export function barChart({ label, unit = '', rows }) {
  const id = `chart-${++ids}`;
  const rowH = 24;
  const H = Math.max(1, rows.length) * rowH + 4;
  const max = Math.max(1e-9, ...rows.map((r) => r.value));
  const left = 150;
  const width = W - left - 90;
  return s(
    'svg',
    { class: 'chart bars', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-t ${id}-d`, 'data-chart': label },
    s('title', { id: `${id}-t` }, label),
    s('desc', { id: `${id}-d` }, rows.map((r) => `${r.label}: ${fmt(r.value, unit)}`).join('; ') || 'none'),
    rows.map((r, i) => [
      s('text', { class: 'axis', x: left - 6, y: i * rowH + 17, 'text-anchor': 'end' }, r.label),
      s('rect', {
        class: `bar-fill ${r.cls ?? ''}`,
        x: left,
        y: i * rowH + 4,
        height: rowH - 8,
        width: Math.max(1, (r.value / max) * width),
      }),
      s('text', { class: 'axis', x: left + Math.max(1, (r.value / max) * width) + 4, y: i * rowH + 17 }, fmt(r.value, unit)),
    ]),
  );
}
