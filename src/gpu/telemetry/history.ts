import type { CardHolder } from '../../model/history.js';
import type { CardSample } from './nvidia-smi.js';

/**
 * A bounded series of points, oldest first, at most one per `spacingMs`.
 * `rolling`: when full, the oldest point goes (the last hours of a card).
 * `thinning`: when full, every other point goes and the spacing doubles, so
 * the series spans the whole life of what it follows (a job of minutes or of
 * days) in at most `capacity` points.
 */
export class Ring<P extends { at: number }> {
  private points: P[] = [];
  private spacing: number;

  constructor(
    private readonly capacity: number,
    spacingMs: number,
    private readonly mode: 'rolling' | 'thinning',
  ) {
    this.spacing = spacingMs;
  }

  push(point: P): void {
    const last = this.points.at(-1);
    if (last !== undefined && point.at - last.at < this.spacing) return;
    this.points.push(point);
    if (this.points.length <= this.capacity) return;
    if (this.mode === 'rolling') this.points.shift();
    else {
      this.points = this.points.filter((_, i) => i % 2 === 0);
      this.spacing *= 2;
    }
  }

  last(): P | undefined {
    return this.points.at(-1);
  }

  since(atMs: number): readonly P[] {
    const from = this.points.findIndex((p) => p.at >= atMs);
    return from < 0 ? [] : this.points.slice(from);
  }
}

/** Points per card. */
export const CARD_POINTS = 720;
/** Points per job, over its whole life (thinned as it runs). */
export const JOB_POINTS = 360;
/** Jobs whose series are kept: those running, then the most recently sampled that ended. */
export const JOBS_KEPT = 256;
/** A card keeps one point per this many samples: at the default 10 s, one per 20 s, so CARD_POINTS span four hours. */
export const CARD_SPACING_SAMPLES = 2;

export interface CardRow {
  at: number;
  utilizationPct: number | null;
  memoryUsedMiB: number | null;
  powerWatts: number | null;
  /** The jobs of this node sampled on the card at that tick. */
  holders: readonly CardHolder[];
}

export interface JobRow {
  at: number;
  attempt: number;
  utilizationPct: number | null;
  memoryUsedMiB: number | null;
  powerWatts: number | null;
}

/** One of a job's cards at a sample, as the sampler hands it over. */
export interface JobCardFigures {
  utilizationPct: number | null;
  memoryUsedMiB: number | null;
  powerWatts: number | null;
}

const NO_HOLDER: readonly CardHolder[] = Object.freeze([]);

const sameHolders = (a: readonly CardHolder[], b: readonly CardHolder[]): boolean =>
  a.length === b.length && a.every((x, i) => x.jobId === b[i]!.jobId && x.owner === b[i]!.owner);

const sum = (xs: (number | null)[]): number | null =>
  xs.length === 0 || xs.some((x) => x === null) ? null : xs.reduce<number>((a, b) => a + b!, 0);

/**
 * What the GPU sampler measured lately, in memory only: per card its last
 * hours (with the jobs that held it), per job its series over its life.
 * Bounded whatever runs: CARD_POINTS per card, JOB_POINTS per job and
 * JOBS_KEPT jobs (README, The operator page, states the bytes).
 */
export class TelemetryHistory {
  private readonly cards = new Map<string, Ring<CardRow>>();
  private readonly jobs = new Map<string, Ring<JobRow>>();
  readonly cardSpacingMs: number;

  constructor(private readonly sampleMs: number) {
    this.cardSpacingMs = CARD_SPACING_SAMPLES * sampleMs;
  }

  /** One reading of every card, with the jobs holding each (`holders` by card UUID). */
  recordCards(at: number, cards: readonly CardSample[], holders: ReadonlyMap<string, readonly CardHolder[]>): void {
    for (const c of cards) {
      let ring = this.cards.get(c.uuid);
      if (ring === undefined) {
        ring = new Ring<CardRow>(CARD_POINTS, this.cardSpacingMs, 'rolling');
        this.cards.set(c.uuid, ring);
      }
      const { utilizationPct, memoryUsedMiB, powerWatts } = c;
      const now = holders.get(c.uuid) ?? NO_HOLDER;
      // A card mostly keeps its holders for many points: those points share one list.
      const before = ring.last()?.holders;
      ring.push({ at, utilizationPct, memoryUsedMiB, powerWatts, holders: before && sameHolders(before, now) ? before : now });
    }
  }

  /** One sample of a job's cards: utilisation averaged, memory and power summed. */
  recordJob(jobId: string, attempt: number, at: number, cards: readonly JobCardFigures[]): void {
    const ring = this.jobs.get(jobId) ?? new Ring<JobRow>(JOB_POINTS, this.sampleMs, 'thinning');
    // Re-inserted at each sample, so the map's first entry is the one sampled least recently.
    this.jobs.delete(jobId);
    this.jobs.set(jobId, ring);
    if (this.jobs.size > JOBS_KEPT) this.jobs.delete(this.jobs.keys().next().value!);
    const utils = cards.map((c) => c.utilizationPct);
    const meanUtil = utils.length === 0 || utils.some((u) => u === null) ? null : sum(utils)! / utils.length;
    ring.push({
      at,
      attempt,
      utilizationPct: meanUtil === null ? null : Math.round(meanUtil * 10) / 10,
      memoryUsedMiB: sum(cards.map((c) => c.memoryUsedMiB)),
      powerWatts: sum(cards.map((c) => c.powerWatts)),
    });
  }

  card(uuid: string, sinceMs: number): readonly CardRow[] {
    return this.cards.get(uuid)?.since(sinceMs) ?? [];
  }

  job(jobId: string): readonly JobRow[] {
    return this.jobs.get(jobId)?.since(0) ?? [];
  }
}
