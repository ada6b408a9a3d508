import type { JobRecord } from '../store/store.js';
import type { Quotas } from './quotas.js';

/** An owner's recent GPU use: GPU-seconds, decayed to `at` (ms). */
interface Decayed {
  value: number;
  at: number;
}

/** A job holding GPUs now, from when (ms). */
interface Holding {
  owner: string;
  gpus: number;
  from: number;
}

/**
 * Each owner's recent GPU use, for fair share: GPU-seconds, each second's
 * weight halving every `halfLifeSeconds` (Slurm's decayed usage), from the
 * attempts that ended and the jobs that hold GPUs now. It is fed what the
 * queue state observes (every node's jobs, fleet-wide) and rebuilt from the
 * store's records after a start or a gap.
 *
 * A fair-share unit is a team (its owners' use counts together) or an owner
 * in no team; its share is the team's `share`, else its nominal `gpus`,
 * else 1. Its rank is its use over its share: the lowest goes first within
 * a priority. With a half-life of 0 every rank is 0, and the queue is FIFO.
 */
export class FairShare {
  private readonly used = new Map<string, Decayed>();
  private readonly holding = new Map<string, Holding>();
  private readonly k: number;

  constructor(
    halfLifeSeconds: number,
    private readonly quotas: Quotas,
  ) {
    // Decay per millisecond: a value v at t0 is worth v·e^(−k(t−t0)) at t.
    this.k = halfLifeSeconds > 0 ? Math.LN2 / (halfLifeSeconds * 1000) : 0;
  }

  get enabled(): boolean {
    return this.k > 0;
  }

  /** How far back use still counts (ten half-lives: under 0.1% of its worth), in ms; 0 when fair share is off. */
  get horizonMs(): number {
    return this.k > 0 ? (10 * Math.LN2) / this.k : 0;
  }

  /** Forgets everything (before a rebuild). */
  clear(): void {
    this.used.clear();
    this.holding.clear();
  }

  /** Adds `gpus` GPUs held from `from` to `to` (ms) by the owner's job (an attempt that ended). */
  add(owner: string, gpus: number, from: number, to: number): void {
    if (!this.enabled || gpus <= 0 || to <= from) return;
    const now = Math.max(to, this.used.get(owner)?.at ?? to);
    const value = this.valueAt(owner, now) + gpus * this.integral(from, to, now);
    this.used.set(owner, { value, at: now });
  }

  /** The job holds `gpus` GPUs since `from` (ms); its use counts as it goes. */
  hold(jobId: string, owner: string, gpus: number, from: number): void {
    if (gpus > 0) this.holding.set(jobId, { owner, gpus, from });
  }

  /** Since when (ms), and what, the job holds, if it does. */
  holdingOf(jobId: string): Readonly<Holding> | undefined {
    return this.holding.get(jobId);
  }

  /** The job no longer holds GPUs (its attempt ended at `to`): what it held is added to its owner's use. */
  release(jobId: string, to: number): void {
    const h = this.holding.get(jobId);
    if (h === undefined) return;
    this.holding.delete(jobId);
    this.add(h.owner, h.gpus, h.from, to);
  }

  /** The unit an owner's use counts in: its team, or itself. */
  unitOf(owner: string): string {
    const team = this.quotas.teamOf(owner);
    return team ? `team:${team.name}` : `owner:${owner}`;
  }

  /** The unit's share: the team's `share`, else its `gpus` (at least a little), else 1. */
  shareOf(owner: string): number {
    const team = this.quotas.teamOf(owner);
    if (team === undefined) return 1;
    return team.share ?? Math.max(team.gpus ?? 1, 0.01);
  }

  /**
   * Each unit's decayed GPU-seconds at `now` (ended attempts and GPUs held
   * now), by unit. Costs one step per owner known and per job holding GPUs.
   */
  usage(now: number): Map<string, number> {
    const byUnit = new Map<string, number>();
    const put = (owner: string, v: number) => {
      const unit = this.unitOf(owner);
      byUnit.set(unit, (byUnit.get(unit) ?? 0) + v);
    };
    for (const owner of this.used.keys()) put(owner, this.valueAt(owner, now));
    for (const h of this.holding.values()) put(h.owner, h.gpus * this.integral(h.from, Math.max(h.from, now), now));
    return byUnit;
  }

  /**
   * Each owner's rank for one scheduling pass (use over share, lower first),
   * computed once at `now`; an owner with no use ranks 0.
   */
  ranks(now: number): (owner: string) => number {
    if (!this.enabled) return () => 0;
    const usage = this.usage(now);
    const memo = new Map<string, number>();
    return (owner) => {
      let r = memo.get(owner);
      if (r === undefined) memo.set(owner, (r = (usage.get(this.unitOf(owner)) ?? 0) / this.shareOf(owner)));
      return r;
    };
  }

  /** The owner's recorded use (ended attempts only) decayed to `t`. */
  private valueAt(owner: string, t: number): number {
    const d = this.used.get(owner);
    if (d === undefined) return 0;
    return d.value * Math.exp(-this.k * Math.max(0, t - d.at));
  }

  /** ∫ from..to of e^(−k(now−u)) du, in seconds: one GPU held from `from` to `to`, as worth at `now`. */
  private integral(from: number, to: number, now: number): number {
    return (Math.exp(-this.k * (now - to)) - Math.exp(-this.k * (now - from))) / this.k / 1000;
  }

  /**
   * Takes in the job's GPU time from its record: a job whose container runs
   * holds its GPUs from its start; one that no longer runs adds what it
   * held, up to its attempt's end. A record of the same run again changes
   * nothing.
   */
  observe(record: JobRecord): void {
    const held = this.holdingOf(record.id);
    const gpus = record.gpus.length;
    if (record.state === 'running' && record.startedAt !== null && gpus > 0) {
      const from = Date.parse(record.startedAt);
      if (held?.from === from) return;
      if (held) this.release(record.id, from);
      this.hold(record.id, record.owner, gpus, from);
      return;
    }
    if (held) {
      const ended = record.attempts.at(-1)?.finishedAt ?? record.finishedAt;
      this.release(record.id, ended ? Date.parse(ended) : Date.now());
    }
  }
}
