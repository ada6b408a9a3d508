import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { JobSchema } from '../../jobs/schema.js';
import { isTerminal } from '../../jobs/states.js';
import { HttpProblem, ProblemSchema } from '../problem.js';
import { errorResponses, jsonResponse, type RouteDeps } from './common.js';
import { examples } from '../examples.js';

/**
 * Remembers when each (owner, job) was last polled, so a client that polls
 * without pause is slowed down by holding its answer, not by a 429 (which a
 * stock HttpSensor trigger would retry at once, making things worse).
 */
class PollPacer {
  private readonly last = new Map<string, number>();

  constructor(private readonly minIntervalMs: number) {}

  async pace(key: string): Promise<void> {
    if (this.minIntervalMs === 0) return;
    const now = Date.now();
    const prev = this.last.get(key);
    const wait = prev === undefined ? 0 : Math.max(0, prev + this.minIntervalMs - now);
    this.last.set(key, now + wait);
    if (this.last.size > 50_000) this.prune(now);
    if (wait > 0) await sleep(wait);
  }

  private prune(now: number): void {
    for (const [k, t] of this.last) if (now - t > 60_000) this.last.delete(k);
  }
}

export const waitRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { jobs, auth, config }) => {
  const pacer = new PollPacer(config.pollMinIntervalMs);
  app.get(
    '/v1/jobs/:id/wait',
    {
      onRequest: auth('read'),
      schema: {
        operationId: 'waitForJob',
        summary: 'Sensor endpoint: 404 while the job runs, 200 once it succeeded, 409 once it did not',
        description:
          "Made for Airflow's stock `HttpSensor` (poke and deferrable, no `response_check`), which keeps waiting on 404 " +
          'and fails on any other error: **404** `job-pending` while the job is queued, pulling, starting or running; ' +
          '**200** with the Job once it `succeeded`; **409** `job-failed` (with `state`, `exitCode`, `reason`) once it ended ' +
          '`failed`, `cancelled` or `timed_out`; **410** `no-such-job` for an id that does not exist (a 404 would make the ' +
          'sensor wait forever). Polls of the same job by the same owner closer together than GANTRY_POLL_MIN_INTERVAL_MS ' +
          'are answered after that interval, so a client that polls without pause is paced instead of refused.',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: z.object({ id: z.string().min(1).max(64).describe('Job id') }),
        response: {
          200: jsonResponse(JobSchema, { description: 'The job succeeded', example: examples.succeededJob }),
          ...errorResponses(400, 401, 403, 409, 410, 414, 422),
          // Here 404 means "not finished yet": the stock sensor keeps waiting on it.
          404: {
            description: 'The job is queued, pulling, starting or running (problem type job-pending, with `state`)',
            content: {
              'application/problem+json': {
                schema: ProblemSchema,
                example: {
                  type: 'https://gantry.dev/problems/job-pending',
                  title: 'Job not finished yet',
                  status: 404,
                  detail: `job ${examples.succeededJob.id} is running`,
                  state: 'running',
                  position: null,
                },
              },
            },
          },
        },
      },
    },
    async (request) => {
      const { principal } = request;
      await pacer.pace(`${principal.owner}\u0000${request.params.id}`);
      const row = jobs.repo.get(request.params.id);
      if (!row || (!principal.isAdmin && row.owner !== principal.owner)) {
        throw new HttpProblem(410, 'no-such-job', 'No such job', `job ${request.params.id} does not exist; waiting for it would never end`);
      }
      const job = jobs.view(row);
      if (!isTerminal(job.state)) {
        throw new HttpProblem(404, 'job-pending', 'Job not finished yet', `job ${job.id} is ${job.state}`, undefined, {
          state: job.state,
          position: job.position,
        });
      }
      if (job.state !== 'succeeded') {
        throw new HttpProblem(409, 'job-failed', 'Job did not succeed', `job ${job.id} ended ${job.state}: ${job.reason ?? ''}`.trim(), undefined, {
          state: job.state,
          exitCode: job.exitCode,
          reason: job.reason,
        });
      }
      return job;
    },
  );
};
