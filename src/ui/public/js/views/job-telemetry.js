// The GPU card of a job page: utilisation, memory (against what the job
// declared, or its cards' size) and power over the job's life, from the
// samples the node kept (GET …/telemetry), then live from the log stream's
// telemetry events.
import { api } from '../api.js';
import { lineChart } from '../chart.js';
import { h } from '../dom.js';
import { relative } from '../format.js';

const MAX_POINTS = 2000;
/** Joules as a person reads them: Wh below one kWh. */
const energy = (j) => (j < 3.6e6 ? `${round(j / 3600)} Wh` : `${round(j / 3.6e6)} kWh`);
const round = (v) => (v === null || v === undefined ? '—' : Number(v.toFixed(1)).toLocaleString());

/** A live sample as a point of the job's series (utilisation averaged, memory and power summed, as the node keeps them). */
function pointOf(sample) {
  const cards = sample.gpus;
  const sum = (key) => (cards.length && cards.every((c) => c[key] !== null) ? cards.reduce((a, c) => a + c[key], 0) : null);
  const util = sum('utilizationPct');
  return {
    time: sample.time,
    attempt: sample.summary.attempt,
    utilizationPct: util === null ? null : util / cards.length,
    memoryUsedMiB: sum('memoryUsedMiB'),
    powerWatts: sum('powerWatts'),
  };
}

/** `card.element`; `card.load(job)` once, `card.sample(s)` per live sample, `card.render(job)` on a change. */
export function telemetryCard(id, signal) {
  const body = h('div', { id: 'telemetry-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const element = h('section', { class: 'card', id: 'telemetry' }, h('h2', {}, 'GPU use'), body);
  let points = [];
  let cardMemory = null; // MiB of the job's cards together, when this node lists them
  let job = null;

  function render() {
    if (!job) return;
    const t = job.gpuTelemetry;
    if (job.gpus.length === 0 && points.length === 0 && !t) {
      body.replaceChildren(h('p', { class: 'muted' }, 'This job asked for no GPU.'));
      return;
    }
    const ms = points.map((p) => Date.parse(p.time));
    const from = Math.min(ms[0] ?? Date.now(), job.startedAt ? Date.parse(job.startedAt) : Infinity);
    const to = Math.max(ms.at(-1) ?? from, job.finishedAt ? Date.parse(job.finishedAt) : Date.now());
    const series = (key) => points.map((p, i) => [ms[i], p[key]]);
    const declared = job.spec.gpus?.memoryMiB ? job.spec.gpus.memoryMiB * Math.max(1, job.gpus.length) : null;
    const common = { from, to: Math.max(to, from + 1000), gapMs: 5 * 60_000, height: 130 };
    const figures = t
      ? h(
          'p',
          { class: 'small', 'data-field': 'telemetry-summary' },
          `${t.samples} samples · mean ${round(t.meanUtilizationPct)}% · peak ${round(t.peakUtilizationPct)}% · peak memory ${round(t.peakMemoryMiB)} MiB`,
          t.energyJoules !== null ? ` · ${energy(t.energyJoules)}` : '',
          t.sharedCard ? ' · shared card: utilisation and power are the card’s, not shown' : '',
          t.lastSampleAt ? ` · last sample ${relative(t.lastSampleAt)}` : '',
        )
      : null;
    const warnings = (t?.warnings ?? []).map((w) => h('p', { class: 'error small', 'data-warning': w.kind }, `${w.kind}: ${w.message}`));
    if (points.length === 0) {
      body.replaceChildren(figures ?? h('p', { class: 'muted' }, 'No GPU sample yet.'), ...warnings);
      return;
    }
    body.replaceChildren(
      figures ?? '',
      ...warnings,
      lineChart({
        ...common,
        label: 'GPU utilisation',
        unit: '%',
        yMax: 100,
        series: [{ name: 'utilisation', cls: 'util', points: series('utilizationPct') }],
      }),
      lineChart({
        ...common,
        label: 'GPU memory in use',
        unit: ' MiB',
        yMax: declared ? null : cardMemory,
        ref: declared ? { value: declared, label: `declared ${declared.toLocaleString()} MiB` } : null,
        series: [{ name: 'memory', cls: 'mem', points: series('memoryUsedMiB') }],
      }),
      lineChart({ ...common, label: 'GPU power', unit: ' W', series: [{ name: 'power', cls: 'power', points: series('powerWatts') }] }),
    );
  }

  return {
    element,
    async load(first) {
      job = first;
      try {
        const [history, cards] = await Promise.all([
          api(`/v1/jobs/${encodeURIComponent(id)}/telemetry`, { signal }),
          api('/v1/gpus', { signal }).catch(() => ({ items: [] })),
        ]);
        points = [...history.points, ...points.filter((p) => p.time > (history.points.at(-1)?.time ?? ''))];
        const mine = cards.items.filter((c) => job.gpus.includes(c.uuid));
        cardMemory = mine.length === job.gpus.length && mine.length > 0 ? mine.reduce((a, c) => a + c.memoryMiB, 0) : null;
      } catch {
        // The summary on the job still shows.
      }
      render();
    },
    sample(sample) {
      points.push(pointOf(sample));
      // A job of days stays drawable: past the cap, every other point goes.
      if (points.length > MAX_POINTS) points = points.filter((_, i) => i % 2 === 0);
      if (job) job = { ...job, gpuTelemetry: sample.summary };
      render();
    },
    render(next) {
      job = next;
      render();
    },
  };
}
