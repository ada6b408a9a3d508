import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { UsageReporter } from '../../../jobs/usage-report.js';
import { USAGE_MAX_DAYS, UsageQuerySchema, type UsageReport, UsageReportSchema, usageWindow } from '../../../model/usage.js';
import { examples } from '../../examples.js';
import { HttpProblem } from '../../problems.js';
import { errorResponses, problemResponse } from '../common.js';

const CSV_COLUMNS = ['owner', 'from', 'to', 'gpu_seconds', 'gpu_hours', 'weighted_gpu_hours', 'jobs', 'attempts'] as const;

/** RFC 4180: a field holding a comma, quote or line break is quoted, its quotes doubled. */
function csvField(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One row per owner, with a header row; lines end CRLF as RFC 4180 has them. */
export function usageCsv(report: UsageReport): string {
  const rows = report.items.map((i) => [i.owner, report.from, report.to, i.gpuSeconds, i.gpuHours, i.weightedGpuHours, i.jobs, i.attempts]);
  return [CSV_COLUMNS, ...rows].map((row) => `${row.map(csvField).join(',')}\r\n`).join('');
}

const notYours = problemResponse(403, 'The token lacks the `read` scope, or names another owner without being an admin’s', {
  ...examples.notAdmin,
  detail: 'only an admin may read the usage of another owner',
  instance: '/v1/usage?owner=team-b',
});

/**
 * /v1/usage: GPU time per owner over a window, from the jobs' records
 * (jobs/usage.ts), as JSON or CSV. An owner other than the caller's is an
 * admin's to read: a non-admin naming one is refused (403), not quietly
 * answered with its own, so an export never carries numbers it did not ask for.
 */
export const usageRoutes: FastifyPluginAsyncZod<{ usage: UsageReporter }> = async (app, { usage }) => {
  app.get(
    '/v1/usage',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'getUsage',
        summary: 'GPU-hours per owner over a time window, weighted by GPU model; JSON or CSV',
        description:
          'Each attempt of a job counts from its container’s start to its end (a running one: to now), clipped to [from, to), ' +
          'times the GPUs it held; a card shared by declared memory counts whole for each job on it. ' +
          'weightedGpuHours weighs each card by its model (GANTRY_GPU_MODEL_WEIGHTS). ' +
          `The window defaults to the last 30 days and may span at most ${USAGE_MAX_DAYS} days. ` +
          'An admin sees every owner (or the one named); any other token sees only its own. ' +
          '`Accept: text/csv` or `format=csv` answers one CSV row per owner, with a header row.',
        tags: ['usage'],
        security: [{ bearer: [] }],
        querystring: UsageQuerySchema,
        response: {
          200: {
            description: 'GPU time per owner',
            content: {
              'application/json': { schema: UsageReportSchema, example: examples.usageReport },
              'text/csv': {
                schema: z.string().describe(`Columns: ${CSV_COLUMNS.join(', ')}.`),
                example: usageCsv(examples.usageReport),
              },
            },
          },
          ...errorResponses(401, 422),
          403: notYours,
        },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const principal = request.principal;
      if (q.owner !== undefined && q.owner !== principal.owner && !principal.isAdmin) {
        throw new HttpProblem(403, 'forbidden', 'Forbidden', 'only an admin may read the usage of another owner', [
          { field: 'querystring.owner', message: `is not this token's owner ("${principal.owner}")` },
        ]);
      }
      const window = usageWindow(q, Date.now());
      // Both bounds given were checked by the schema; these are the cases where `to` defaulted to now.
      const spanMs = Date.parse(window.to) - Date.parse(window.from);
      const unfit =
        spanMs <= 0
          ? 'must be earlier than to (now)'
          : spanMs > USAGE_MAX_DAYS * 86_400_000
            ? `the window may span at most ${USAGE_MAX_DAYS} days`
            : null;
      if (unfit !== null) {
        throw new HttpProblem(422, 'validation', 'Request is invalid', `querystring.from: ${unfit}`, [
          { field: 'querystring.from', message: unfit },
        ]);
      }
      const owner = q.owner ?? (principal.isAdmin ? undefined : principal.owner);
      const report = await usage.report({ ...window, owner });
      const wantsCsv = q.format === 'csv' || (q.format === undefined && (request.headers.accept ?? '').includes('text/csv'));
      if (wantsCsv) return reply.type('text/csv; charset=utf-8').send(usageCsv(report));
      return report;
    },
  );
};
