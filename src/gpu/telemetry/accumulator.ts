import type { GpuTelemetry, GpuWarning } from '../../model/gpu-telemetry.js';
import type { CardSample } from './nvidia-smi.js';

/** A card at or under this utilisation (%) is taken for idle: nvidia-smi shows a few % for a card that only holds memory. */
export const IDLE_MAX_UTILIZATION_PCT = 5;

export interface TelemetryPolicy {
  /** Minutes of idle cards before a warning; 0 never warns. */
  idleMinutes: number;
  idleAction: 'warn' | 'end';
  memoryExceededAction: 'warn' | 'end';
}

/** One of the job's cards at one sample: the card's own figures, and the memory that is the job's. */
export interface JobCardReading {
  uuid: string;
  card: CardSample;
  /** The card's memory in use (exclusive), or the job's own processes' (shared; 0 when none was seen). */
  jobMemoryMiB: number | null;
}

/** What a sample made the policy decide: warnings raised now, and whether the job is to be ended, for which cause. */
export interface SampleVerdict {
  cards: CardSample[];
  warnings: GpuWarning[];
  end: { cause: 'idle' | 'memory_exceeded'; reason: string } | null;
}

export interface JobTelemetryStart {
  attempt: number;
  /** When the container started (epoch ms): GPU-seconds and the first sample's energy count from here. */
  startedAtMs: number;
  cards: number;
  /** Declared memory per card when sharing; null for exclusive use. */
  declaredMemoryMiB: number | null;
}

/**
 * One attempt's GPU figures, folded in sample by sample: nothing is kept
 * per sample, so a job of days costs what a job of seconds does. A shared
 * card's utilisation and power are the card's, not the job's (nvidia-smi
 * cannot split them by process): they are not counted as the job's, but a
 * card at ~0% still means every job on it is idle.
 */
export class JobTelemetry {
  private samples = 0;
  private utilizationSamples = 0;
  private utilizationSum = 0;
  private peakUtilization: number | null = null;
  private peakMemory: number | null = null;
  private energy: number | null;
  private lastAt: number | null = null;
  private firstAt: number | null = null;
  private lastPower: number | null = null;
  private idleSince: number | null = null;
  private idleWarned = false;
  private overDeclared = false;
  private readonly warnings: GpuWarning[] = [];
  readonly shared: boolean;
  readonly attempt: number;

  constructor(
    private readonly start: JobTelemetryStart,
    private readonly policy: TelemetryPolicy,
    /** The summary stored before a restart, for the same attempt: its figures carry on. */
    stored: GpuTelemetry | null = null,
  ) {
    this.shared = start.declaredMemoryMiB !== null;
    this.attempt = start.attempt;
    this.energy = this.shared ? null : 0;
    if (stored && stored.attempt === start.attempt) {
      this.samples = stored.samples;
      this.utilizationSamples = stored.meanUtilizationPct === null ? 0 : stored.samples;
      this.utilizationSum = (stored.meanUtilizationPct ?? 0) * this.utilizationSamples;
      this.peakUtilization = stored.peakUtilizationPct;
      this.peakMemory = stored.peakMemoryMiB;
      this.energy = stored.energyJoules;
      this.firstAt = stored.firstSampleAt === null ? null : Date.parse(stored.firstSampleAt);
      this.lastAt = stored.lastSampleAt === null ? null : Date.parse(stored.lastSampleAt);
      this.overDeclared = stored.overDeclaredMemory;
      this.warnings.push(...stored.warnings);
    }
  }

  /** Folds in one sample of the job's cards, taken at `at` (epoch ms). */
  add(at: number, readings: readonly JobCardReading[]): SampleVerdict {
    this.samples++;
    this.firstAt ??= at;
    const cards = readings.map((r) => ({
      uuid: r.uuid,
      utilizationPct: this.shared ? null : r.card.utilizationPct,
      memoryUsedMiB: r.jobMemoryMiB,
      powerWatts: this.shared ? null : r.card.powerWatts,
    }));

    const utils = cards.map((c) => c.utilizationPct).filter((u): u is number => u !== null);
    if (utils.length > 0) {
      this.utilizationSamples++;
      this.utilizationSum += utils.reduce((a, b) => a + b, 0) / utils.length;
      this.peakUtilization = Math.max(this.peakUtilization ?? 0, ...utils);
    }
    const mems = cards.map((c) => c.memoryUsedMiB).filter((m): m is number => m !== null);
    if (mems.length > 0)
      this.peakMemory = Math.max(
        this.peakMemory ?? 0,
        mems.reduce((a, b) => a + b, 0),
      );

    const powers = cards.map((c) => c.powerWatts);
    const power = powers.length > 0 && powers.every((p) => p !== null) ? powers.reduce((a, b) => a! + b!, 0)! : null;
    if (this.energy !== null && power !== null) {
      const from = this.lastAt ?? this.start.startedAtMs;
      const seconds = Math.max(0, at - from) / 1000;
      // Trapezoids between samples; before the first, the first sample's power stands for the interval.
      this.energy += ((this.lastPower ?? power) + power) * 0.5 * seconds;
    }
    this.lastPower = power;
    this.lastAt = at;

    const warnings: GpuWarning[] = [];
    let end: SampleVerdict['end'] = null;
    const time = new Date(at).toISOString();

    const idle =
      readings.length > 0 && readings.every((r) => r.card.utilizationPct !== null && r.card.utilizationPct <= IDLE_MAX_UTILIZATION_PCT);
    if (!idle) {
      this.idleSince = null;
      this.idleWarned = false;
    } else {
      this.idleSince ??= at;
      const minutes = (at - this.idleSince) / 60_000;
      if (this.policy.idleMinutes > 0 && minutes >= this.policy.idleMinutes && !this.idleWarned) {
        this.idleWarned = true;
        const message = `its GPUs were at most ${IDLE_MAX_UTILIZATION_PCT}% utilised for ${minutes.toFixed(1)} minutes (GANTRY_GPU_IDLE_MINUTES=${this.policy.idleMinutes})`;
        warnings.push({ kind: 'idle', time, message, action: this.policy.idleAction });
        if (this.policy.idleAction === 'end') end = { cause: 'idle', reason: `ended by Gantry: ${message}` };
      }
    }

    const declared = this.start.declaredMemoryMiB;
    const over = declared === null ? undefined : cards.find((c) => c.memoryUsedMiB !== null && c.memoryUsedMiB > declared);
    if (over && !this.overDeclared) {
      this.overDeclared = true;
      const message = `it used ${over.memoryUsedMiB} MiB of shared GPU ${over.uuid}, more than the ${declared} MiB it declared`;
      warnings.push({ kind: 'memory_exceeded', time, message, action: this.policy.memoryExceededAction });
      if (this.policy.memoryExceededAction === 'end') end ??= { cause: 'memory_exceeded', reason: `ended by Gantry: ${message}` };
    }
    this.warnings.push(...warnings);
    return { cards, warnings, end };
  }

  summary(): GpuTelemetry {
    const round = (n: number | null, digits = 1) => (n === null ? null : Number(n.toFixed(digits)));
    const heldUntil = this.lastAt ?? this.start.startedAtMs;
    return {
      attempt: this.start.attempt,
      samples: this.samples,
      firstSampleAt: this.firstAt === null ? null : new Date(this.firstAt).toISOString(),
      lastSampleAt: this.lastAt === null ? null : new Date(this.lastAt).toISOString(),
      gpuSeconds: round((this.start.cards * Math.max(0, heldUntil - this.start.startedAtMs)) / 1000, 2)!,
      sharedCard: this.shared,
      meanUtilizationPct: this.utilizationSamples === 0 ? null : round(this.utilizationSum / this.utilizationSamples),
      peakUtilizationPct: this.peakUtilization,
      peakMemoryMiB: this.peakMemory,
      energyJoules: round(this.energy, 0),
      declaredMemoryMiB: this.start.declaredMemoryMiB,
      overDeclaredMemory: this.overDeclared,
      warnings: [...this.warnings],
    };
  }
}
