import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { type FairShareUnit, type Team, type TeamList, TeamListSchema } from '../../../model/teams.js';
import type { FairShare } from '../../../scheduling/fair-share.js';
import type { QueueState } from '../../../scheduling/queue-state.js';
import type { Quotas } from '../../../scheduling/quotas.js';
import { examples } from '../../examples.js';
import { errorResponses, jsonResponse, type RouteDeps } from '../common.js';

/** What the teams' use is read from: the quotas, and the node's queue state (its fair share included). */
export interface TeamSources {
  quotas: Quotas;
  queue: Pick<QueueState, 'queuedOf' | 'activeOf'> & { fairShare: FairShare };
  halfLifeSeconds: number;
}

/**
 * Every team's limits and use, and every fair-share unit's use, now: read
 * live, so a reload of the quotas file shows at once (a team removed is
 * gone, its owners count on their own).
 */
export function teamList({ quotas, queue, halfLifeSeconds }: TeamSources, now = Date.now()): TeamList {
  const fs = queue.fairShare;
  const usage = fs.usage(now);
  const teams = quotas.teams();
  const items = teams.map((t): Team => {
    const active = queue.activeOf(t.owners);
    const share = fs.shareOf(t.owners[0]!);
    const gpuSeconds = usage.get(`team:${t.name}`) ?? 0;
    return {
      name: t.name,
      owners: [...t.owners],
      limits: {
        maxQueued: t.maxQueued ?? null,
        maxRunning: t.maxRunning ?? null,
        gpus: t.gpus ?? null,
        borrowGpus: t.borrowGpus ?? null,
        share,
      },
      use: {
        queuedJobs: queue.queuedOf(t.owners),
        runningJobs: active.jobs,
        gpus: active.gpus,
        borrowedGpus: t.gpus === undefined ? 0 : Math.max(0, active.gpus - t.gpus),
      },
      fairShare: { gpuSeconds, rank: gpuSeconds / share },
    };
  });
  const shareOfUnit = (unit: string) => {
    const team = unit.startsWith('team:') ? teams.find((t) => `team:${t.name}` === unit) : undefined;
    return team ? fs.shareOf(team.owners[0]!) : 1;
  };
  const units = [...usage]
    .filter(([, gpuSeconds]) => gpuSeconds > 0)
    .map(([unit, gpuSeconds]): FairShareUnit => {
      const share = shareOfUnit(unit);
      return { unit, gpuSeconds, share, rank: gpuSeconds / share };
    })
    .sort((a, b) => b.gpuSeconds - a.gpuSeconds || a.unit.localeCompare(b.unit));
  return { items, fairShare: { halfLifeSeconds, units } };
}

/** The part of the list a caller may read: an admin all of it; anyone else its own team and its own fair-share unit. */
export function teamListFor(list: TeamList, owner: string, isAdmin: boolean, unitOf: (owner: string) => string): TeamList {
  if (isAdmin) return list;
  const unit = unitOf(owner);
  return {
    items: list.items.filter((t) => t.owners.includes(owner)),
    fairShare: { ...list.fairShare, units: list.fairShare.units.filter((u) => u.unit === unit) },
  };
}

/**
 * /v1/teams: each team's use against its quota, and fair share's standing,
 * as this node sees the fleet now. A team's numbers say what its owners do,
 * so a non-admin reads only its own team (an owner in no team: none).
 */
export const teamRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { quotas, queue, config }) => {
  app.get(
    '/v1/teams',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'listTeams',
        summary: 'Each team’s limits and use now (jobs, GPUs, borrowed GPUs), and fair share’s recent GPU use per unit',
        description:
          'The teams of GANTRY_QUOTAS_FILE, read live (a reload on SIGHUP shows at once), with what their jobs use fleet-wide ' +
          'as this node has heard, and each fair-share unit’s decayed GPU-seconds (a unit is a team, or an owner in no team). ' +
          'An admin sees every team and unit; any other token only its own team and unit (empty lists when it has none).',
        tags: ['teams'],
        security: [{ bearer: [] }],
        response: {
          200: jsonResponse(TeamListSchema, {
            description: 'The teams and fair-share units the token may see',
            example: examples.teamList,
          }),
          ...errorResponses(401, 403),
        },
      },
    },
    async (request) => {
      const { owner, isAdmin } = request.principal;
      const list = teamList({ quotas, queue, halfLifeSeconds: config.fairShareHalfLifeSeconds });
      return teamListFor(list, owner, isAdmin, (o) => queue.fairShare.unitOf(o));
    },
  );
};
