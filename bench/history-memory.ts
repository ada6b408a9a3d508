// What the operator page's in-memory rings cost when full, measured on the
// live heap (run with --expose-gc): per card (CARD_POINTS points, one job
// holding it at every point), per job (JOB_POINTS points) and for the queue
// (QUEUE_POINTS points). Each point is built as the sampler builds it, from
// records read afresh at every tick, so no string is shared between points.
//   node --expose-gc --import tsx bench/history-memory.ts
import { CARD_POINTS, JOB_POINTS, JOBS_KEPT, TelemetryHistory } from '../src/gpu/telemetry/history.js';
import type { CardSample } from '../src/gpu/telemetry/nvidia-smi.js';
import type { CardHolder } from '../src/model/history.js';
import { QUEUE_POINTS, QueueHistory } from '../src/scheduling/queue-history.js';
import type { JobRecord } from '../src/store/store.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heap(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

/** A string built at run time, as a record read from the store holds its own. */
const fresh = (s: string) => JSON.parse(JSON.stringify(s)) as string;

const CARDS = 64;
const SAMPLE_MS = 10_000;
const uuids = Array.from({ length: CARDS }, (_, i) => `GPU-${String(i).padStart(8, '0')}-aaaa-4000-8000-000000000001`);

function cards(): { kept: number; history: TelemetryHistory } {
  const history = new TelemetryHistory(SAMPLE_MS);
  const before = heap();
  for (let tick = 0; tick < CARD_POINTS * 2; tick++) {
    const at = tick * SAMPLE_MS;
    const reading: CardSample[] = uuids.map((uuid) => ({
      uuid,
      utilizationPct: tick % 100,
      memoryUsedMiB: 40_000 + tick,
      powerWatts: 300.5,
    }));
    const holders = new Map<string, CardHolder[]>(
      uuids.map((u, i) => [u, [{ jobId: fresh(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`), owner: fresh('airflow') }]]),
    );
    history.recordCards(at, reading, holders);
  }
  return { kept: (heap() - before) / CARDS, history };
}

function jobs(): { kept: number; history: TelemetryHistory } {
  const history = new TelemetryHistory(SAMPLE_MS);
  const before = heap();
  for (let j = 0; j < JOBS_KEPT; j++) {
    const id = `00000000-0000-4000-8000-${String(j).padStart(12, '0')}`;
    // Twice the capacity: the ring has thinned once and is full again.
    for (let tick = 0; tick < JOB_POINTS * 2; tick++)
      history.recordJob(id, 1, tick * SAMPLE_MS, [{ utilizationPct: 90, memoryUsedMiB: 40_000 + tick, powerWatts: 300.5 }]);
  }
  return { kept: (heap() - before) / JOBS_KEPT, history };
}

function queue(): { kept: number; history: QueueHistory } {
  const queued = Array.from(
    { length: 50 },
    () => ({ createdAt: new Date(0).toISOString(), spec: { gpus: { count: 1 } } }) as unknown as JobRecord,
  );
  const history = new QueueHistory(() => queued);
  const before = heap();
  for (let i = 0; i < QUEUE_POINTS * 2; i++) history.sample(i * 30_000);
  return { kept: heap() - before, history };
}

const c = cards();
const j = jobs();
const q = queue();
console.log(`per card, ${CARD_POINTS} points: ${(c.kept / 1024).toFixed(1)} KiB`);
console.log(
  `per job, ${JOB_POINTS} points: ${(j.kept / 1024).toFixed(1)} KiB (at most ${JOBS_KEPT} jobs: ${((j.kept * JOBS_KEPT) / 1048576).toFixed(1)} MiB)`,
);
console.log(`queue, ${QUEUE_POINTS} points: ${(q.kept / 1024).toFixed(1)} KiB`);
// Keep the rings alive until measured.
void [c.history, j.history, q.history];
