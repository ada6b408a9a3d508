import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config.js';

/** A team's limits, fleet-wide; a limit left out is no limit. */
export const QuotaSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, "_", "." and "-"'),
    owners: z.array(z.string().min(1).max(128)).min(1).describe('Token owners whose jobs count against these limits together'),
    maxQueued: z.number().int().min(1).optional().describe('Jobs queued at once; a submit beyond it is refused (429, Retry-After)'),
  })
  .strict();
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
}

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
