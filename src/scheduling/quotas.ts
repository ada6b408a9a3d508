import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config.js';
import type { WaitInfo } from '../model/queue.js';
import type { Limits, QueueEntry } from './plan.js';

/** A team's limits, fleet-wide; a limit left out is no limit. */
export const QuotaSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, "_", "." and "-"'),
    owners: z.array(z.string().min(1).max(128)).min(1).describe('Token owners whose jobs count against these limits together'),
    maxQueued: z.number().int().min(1).optional().describe('Jobs queued at once; a submit beyond it is refused (429, Retry-After)'),
    maxRunning: z.number().int().min(1).optional().describe('Jobs taken by a node and not ended, at once'),
    gpus: z.number().int().min(0).optional().describe('GPUs its jobs may hold at once: its nominal share'),
    borrowGpus: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('GPUs beyond `gpus` it may hold while no other team with jobs waiting holds less than its own `gpus`'),
    share: z
      .number()
      .positive()
      .optional()
      .describe(
        'Its weight in fair share (GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS): its recent GPU use is ranked against this; default its `gpus`, or 1',
      ),
  })
  .strict()
  .refine((q) => q.borrowGpus === undefined || q.gpus !== undefined, { message: '"borrowGpus" needs "gpus"', path: ['borrowGpus'] });
export const QuotasFileSchema = z.array(QuotaSchema).superRefine((teams, ctx) => {
  const seen = new Map<string, string>();
  teams.forEach((team, i) => {
    team.owners.forEach((owner, j) => {
      const other = seen.get(owner);
      if (other !== undefined)
        ctx.addIssue({ code: 'custom', path: [i, 'owners', j], message: `"${owner}" is already in team "${other}"` });
      seen.set(owner, team.name);
    });
  });
});
export type Quota = z.infer<typeof QuotaSchema>;

/** How long a refused submitter is asked to wait: the team's queue drains at the pace of its jobs, not of its requests. */
export const QUOTA_RETRY_AFTER_SECONDS = 30;

/**
 * The teams and their limits (GANTRY_QUOTAS_FILE), looked up by owner. An
 * owner in no team has no limits. Replaced whole on a reload, so a check
 * reads one set of limits or the other.
 */
export class Quotas {
  private byOwner = new Map<string, Quota>();

  constructor(teams: readonly Quota[] = []) {
    this.replace(teams);
  }

  replace(teams: readonly Quota[]): void {
    this.byOwner = new Map(teams.flatMap((t) => t.owners.map((o) => [o, t] as const)));
  }

  /** The owner's team, or undefined when the owner has none. */
  teamOf(owner: string): Quota | undefined {
    return this.byOwner.get(owner);
  }

  /** Every team, once. */
  teams(): Quota[] {
    return [...new Set(this.byOwner.values())];
  }
}

/** What quotas count, fleet-wide (as this node has heard): the queue state. */
export interface TeamUsage {
  activeOf(owners: readonly string[]): { jobs: number; gpus: number };
  /** GPUs asked for by the team's next GPU job, or null when it has none queued. */
  nextGpuJobOf(owners: readonly string[]): number | null;
}

const gpusOf = (e: QueueEntry) => (e.gpus === undefined ? 0 : (e.gpus.ids?.length ?? e.gpus.count ?? 0));

/**
 * The teams' running and GPU limits over one scheduling pass, counting
 * what the pass starts. A team's GPU jobs start in its own order: once one
 * waits for the team's GPUs, its later GPU jobs wait behind it (so a team's
 * large job is not starved by its own small ones). Borrowing beyond the
 * nominal `gpus` is allowed only while no other team is owed: one whose
 * next GPU job would start within its own nominal share (a team whose next
 * job would have to borrow too has no better claim, so two such teams never
 * block each other).
 */
export class TeamLimits implements Limits {
  private readonly started = new Map<string, { jobs: number; gpus: number }>();
  /** Teams whose GPU jobs wait behind one refused for the team's GPUs, with why. */
  private readonly gpuClosed = new Map<string, WaitInfo>();
  /** Teams whose next GPU job would start within their nominal GPUs, as the pass began. */
  private readonly owed: Quota[];

  constructor(
    private readonly quotas: Quotas,
    private readonly usage: TeamUsage,
  ) {
    this.owed = quotas.teams().filter((t) => {
      const next = usage.nextGpuJobOf(t.owners);
      return t.gpus !== undefined && next !== null && usage.activeOf(t.owners).gpus + next <= t.gpus;
    });
  }

  check(e: QueueEntry): WaitInfo | null {
    const team = this.quotas.teamOf(e.owner);
    if (team === undefined) return null;
    const used = this.used(team);
    const full = this.closed(e.owner, false);
    if (full) return full;
    const want = gpusOf(e);
    if (want === 0 || team.gpus === undefined || used.gpus + want <= team.gpus) return null;
    const borrow = team.borrowGpus ?? 0;
    const lender = this.owed.find((t) => t !== team);
    let why: string | null = null;
    if (used.gpus + want > team.gpus + borrow) {
      why = `team "${team.name}" holds ${used.gpus} of its ${team.gpus} GPUs${borrow ? ` (+${borrow} it may borrow)` : ''} and this job asks for ${want}`;
    } else if (lender) {
      why = `team "${team.name}" holds ${used.gpus} of its ${team.gpus} GPUs and this job, asking for ${want}, would borrow; it may borrow only while no team waits within its share, and team "${lender.name}" does`;
    }
    if (why === null) return null;
    const wait = quotaWait(why);
    this.gpuClosed.set(team.name, wait);
    return wait;
  }

  take(e: QueueEntry): void {
    const team = this.quotas.teamOf(e.owner);
    if (team === undefined) return;
    const s = this.started.get(team.name) ?? { jobs: 0, gpus: 0 };
    this.started.set(team.name, { jobs: s.jobs + 1, gpus: s.gpus + gpusOf(e) });
  }

  closed(owner: string, gpu: boolean): WaitInfo | null {
    const team = this.quotas.teamOf(owner);
    if (team === undefined) return null;
    const { jobs } = this.used(team);
    if (team.maxRunning !== undefined && jobs >= team.maxRunning) return quotaWait(`team "${team.name}" runs ${jobs} jobs, its maxRunning`);
    return gpu ? (this.gpuClosed.get(team.name) ?? null) : null;
  }

  private used(team: Quota): { jobs: number; gpus: number } {
    const active = this.usage.activeOf(team.owners);
    const s = this.started.get(team.name);
    return { jobs: active.jobs + (s?.jobs ?? 0), gpus: active.gpus + (s?.gpus ?? 0) };
  }
}

const quotaWait = (text: string): WaitInfo => ({ code: 'quota', text: `${text} (GANTRY_QUOTAS_FILE)`, estimatedStartAt: null });

/** Reads GANTRY_QUOTAS_FILE; ConfigError for a file that cannot be read or does not parse. */
export function readQuotasFile(file: string): Quota[] {
  const where = path.resolve(file);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(where, 'utf8'));
  } catch (err) {
    throw new ConfigError('GANTRY_QUOTAS_FILE', `${where}: ${(err as Error).message}`);
  }
  const parsed = QuotasFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      'GANTRY_QUOTAS_FILE',
      `${where}: ${parsed.error.issues.map((i) => `[${i.path.join('.')}] ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}
