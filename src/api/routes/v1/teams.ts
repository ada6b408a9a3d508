import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { TeamListSchema } from '../../../model/teams.js';
import { teamList, teamListFor } from '../../../scheduling/teams.js';
import { examples } from '../../examples.js';
import { errorResponses, jsonResponse, type RouteDeps } from '../common.js';

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
