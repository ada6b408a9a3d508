import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { JobSchema } from '../../../model/job.js';
import { isTerminal } from '../../../model/states.js';
import { examples } from '../../examples.js';
import { frozenJson } from '../../frozen-json.js';
import { ProblemSchema, sendProblem } from '../../problems.js';
import { errorResponses, jsonResponse, type RouteDeps } from '../common.js';

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
    // Keys come from the requests (refused ones too), so memory is bounded
    // outright: forgetting them only lets each key's next poll through at once.
    if (this.last.size > 50_000) this.last.clear();
  }
}

/** /v1/jobs/{id}/wait: the endpoint made for Airflow's stock HttpSensor. */
export const jobWaitRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { jobs, config }) => {
  const pacer = new PollPacer(config.pollMinIntervalMs);
  app.get(
    '/v1/jobs/:id/wait',
    {
      // Refusals are paced per client and URL, as polls are per owner and job.
      onRequest: app.auth('read', { holdRefusal: (request) => pacer.pace(`refused\u0000${request.ip}\u0000${request.url}`) }),
      // The 200 body is JobService's view, of JobSchema's shape by
      // construction: serialized as GET /v1/jobs/{id} is, not re-validated.
      serializerCompiler: () => frozenJson,
      schema: {
        operationId: 'waitForJob',
        summary: 'Deprecated sensor endpoint: 404 while the job runs, 200 once it succeeded, 303 once it did not',
        deprecated: true,
        description:
          "**Deprecated**: a stock `HttpSensor` on it succeeds on a failed job when the connection sets `allow_redirects: false`, and on a pending one with `check_response: false`, which no answer of this endpoint can prevent. Wait with `HttpSensor` on `GET /v1/jobs/{id}` and a `response_check` (airflow/dags/gantry_checks.py), or the provider's `GantryJobSensor`. " +
          "Made for Airflow's stock `HttpSensor` (poke and deferrable, no `response_check`; see airflow/SENSOR.md): " +
          '**404** `job-pending` while the job is queued, pulling, starting or running (keep waiting); **200** with the Job once it ' +
          '`succeeded`; **303** `job-unsuccessful` once it ended `failed`, `cancelled` or `timed_out`, and **303** `not-found` for an ' +
          'id that does not exist (a 404 would make the sensor wait forever). The 303 points to a non-HTTP `gantry:` URL on purpose: ' +
          "both of the provider's HTTP clients follow it and raise a non-Airflow error, which fails the sensor at once, also once " +
          'deferred (its trigger loops without sleeping on any other error status). Polls of the same job by the same owner closer ' +
          'together than GANTRY_POLL_MIN_INTERVAL_MS are answered after that interval (never with 429, which the trigger would retry at once); ' +
          'so are refused polls (401/403) from the same client for the same URL, which a deferred sensor whose token was revoked would otherwise repeat in a loop.',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: z.object({ id: z.string().min(1).max(64).describe('Job id') }),
        response: {
          200: jsonResponse(JobSchema, { description: 'The job succeeded', example: examples.succeededJob }),
          ...errorResponses(400, 401, 403, 414, 422),
          303: {
            description:
              'The job ended without success (problem type job-unsuccessful, with `state`, `exitCode`, `reason`, `job`), or there is no such job (type not-found). `Location` is a non-HTTP `gantry:` URL.',
            headers: { Location: z.string().describe('gantry:jobs/{id}?state={state}[&exitCode={n}]') },
            content: {
              'application/problem+json': {
                schema: ProblemSchema,
                example: {
                  type: 'https://gantry.dev/problems/job-unsuccessful',
                  title: 'Job failed',
                  status: 303,
                  detail: `job ${examples.succeededJob.id} ended failed with exit code 3: exited with code 3`,
                  jobId: examples.succeededJob.id,
                  state: 'failed',
                  exitCode: 3,
                  reason: 'exited with code 3',
                },
              },
            },
          },
          // Here 404 means "not finished yet": the stock sensor keeps waiting on it.
          404: {
            description: 'The job is queued, pulling, starting or running (problem type job-pending, with `state`)',
            content: {
              'application/problem+json': {
                schema: ProblemSchema,
                example: {
                  type: 'https://gantry.dev/problems/job-pending',
                  title: 'Job not finished',
                  status: 404,
                  detail: `job ${examples.succeededJob.id} is running`,
                  jobId: examples.succeededJob.id,
                  state: 'running',
                  position: null,
                },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const { principal } = request;
      await pacer.pace(`${principal.owner}\u0000${request.params.id}`);
      const id = request.params.id;
      const job = await jobs.findVisible(principal, id);
      if (!job) {
        reply.header('Location', `gantry:jobs/${encodeURIComponent(id)}?state=not_found`);
        return sendProblem(reply, {
          status: 303,
          slug: 'not-found',
          title: 'No such job',
          detail: `job ${id} does not exist; waiting for it would never end`,
          extra: { jobId: id, state: null },
        });
      }
      if (!isTerminal(job.state)) {
        reply.header('Retry-After', String(Math.max(1, Math.ceil(config.pollMinIntervalMs / 1000))));
        return sendProblem(reply, {
          status: 404,
          slug: 'job-pending',
          title: 'Job not finished',
          detail: `job ${job.id} is ${job.state}`,
          extra: { jobId: job.id, state: job.state, position: job.position },
        });
      }
      if (job.state === 'succeeded') return reply.code(200).send(job);
      // A redirect to a non-HTTP URL: the only answer that fails the stock
      // HttpSensor at once in both modes (see airflow/SENSOR.md).
      const exit = job.exitCode === null ? '' : `&exitCode=${job.exitCode}`;
      reply.header('Location', `gantry:jobs/${job.id}?state=${job.state}${exit}`);
      const title = { failed: 'Job failed', cancelled: 'Job cancelled', timed_out: 'Job timed out' }[job.state as 'failed'];
      return sendProblem(reply, {
        status: 303,
        slug: 'job-unsuccessful',
        title,
        detail:
          `job ${job.id} ended ${job.state}${job.exitCode === null ? '' : ` with exit code ${job.exitCode}`}: ${job.reason ?? ''}`.trim(),
        extra: { jobId: job.id, state: job.state, exitCode: job.exitCode, reason: job.reason, job },
      });
    },
  );
};
