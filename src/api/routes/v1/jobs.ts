import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { NotFoundError } from '../../../model/errors.js';
import { JobSchema, JobSpecSchema } from '../../../model/job.js';
import { JOB_STATES, type JobState } from '../../../model/states.js';
import { examples } from '../../examples.js';
import { frozenJson } from '../../frozen-json.js';
import { errorResponses, jsonResponse, type RouteDeps } from '../common.js';

const Location = z.string().describe("The job's URL, `/v1/jobs/{id}`.");

const JobIdParams = z.object({ id: z.string().min(1).max(64).describe('Job id') });

export const JobListSchema = z
  .object({
    items: z.array(JobSchema),
    nextCursor: z.string().nullable().describe('Pass as `cursor` for the next (older) page; null on the last page.'),
  })
  .meta({ id: 'JobList' });

const ListQuery = z
  .object({
    state: z
      .string()
      .optional()
      .describe('Comma-separated states, e.g. `queued,running`.')
      .refine((s) => s === undefined || s.split(',').every((x) => (JOB_STATES as readonly string[]).includes(x)), {
        message: `each state must be one of ${JOB_STATES.join(', ')}`,
      }),
    label: z
      .string()
      .regex(/^[^=]+=.*$/, 'must be key=value')
      .optional()
      .describe('Only jobs carrying this label, as `key=value`.'),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    cursor: z.string().regex(/^\d+$/, 'must be a cursor returned by a previous page').optional(),
  })
  .strict();

/** /v1/jobs and /v1/jobs/{id}: submit, list, get (the status poll) and cancel. */
export const jobRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { jobs }) => {
  app.post(
    '/v1/jobs',
    {
      onRequest: app.auth('submit'),
      config: { audit: { action: 'job.submit' } },
      schema: {
        operationId: 'submitJob',
        summary: 'Submit a job',
        description:
          'Queues a container run. Gantry builds the container from the spec under the operator policy; refused specs create no container. ' +
          'With `Idempotency-Key`, the same key and body return the same job (200) and the same key with another body is refused (422). ' +
          'With `dryRun=true` nothing is stored: the spec is checked as a submit would be (the same refusals), and the answer (200) is the job it would make, ' +
          'with id `dry-run`, its `position` in the queue and what it would wait for on the answering node (`waiting`, `reason`), or that it would start at once.',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        headers: z.object({
          'idempotency-key': z.string().min(1).max(255).optional().describe('Makes retries safe: same key + body → same job.'),
        }),
        querystring: z
          .object({
            dryRun: z.enum(['true', 'false']).optional().describe('`true`: check and place the job without storing it.'),
          })
          .strict(),
        body: JobSpecSchema,
        response: {
          201: jsonResponse(JobSchema, { description: 'Job created', example: examples.queuedJob, headers: { Location } }),
          200: jsonResponse(JobSchema, {
            description: 'Replay of an earlier submission with the same Idempotency-Key, or the answer of a dry run (no Location then)',
            example: examples.queuedJob,
            headers: { Location },
          }),
          ...errorResponses(400, 401, 403, 413, 415, 422, 429, 503, 507),
        },
      },
    },
    async (request, reply) => {
      if (request.query.dryRun === 'true') return reply.code(200).send(await jobs.dryRun(request.principal, request.body));
      const { job, created } = await jobs.submit(request.principal, request.body, {
        idempotencyKey: request.headers['idempotency-key'] ?? null,
        requestId: request.id,
      });
      reply.header('Location', `/v1/jobs/${job.id}`);
      return reply.code(created ? 201 : 200).send(job);
    },
  );

  app.get(
    '/v1/jobs',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'listJobs',
        summary: 'List jobs, newest first',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        querystring: ListQuery,
        response: {
          200: jsonResponse(JobListSchema, {
            description: 'A page of jobs',
            example: { items: [examples.succeededJob], nextCursor: null },
          }),
          ...errorResponses(401, 403, 422),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const label = q.label ? { key: q.label.slice(0, q.label.indexOf('=')), value: q.label.slice(q.label.indexOf('=') + 1) } : undefined;
      const page = await jobs.list(request.principal, {
        states: q.state ? (q.state.split(',') as JobState[]) : undefined,
        label,
        cursor: q.cursor !== undefined ? Number(q.cursor) : undefined,
        limit: q.limit,
      });
      return { items: page.items, nextCursor: page.nextCursor === null ? null : String(page.nextCursor) };
    },
  );

  app.get(
    '/v1/jobs/:id',
    {
      onRequest: app.auth('read'),
      // The status poll. The body is a job view, of JobSchema's shape by
      // construction, so it is not re-validated on the way out, and a view
      // is frozen, so one that has not changed since the last poll is not
      // serialized again.
      serializerCompiler: () => frozenJson,
      schema: {
        operationId: 'getJob',
        summary: 'Get a job',
        description: 'Answers 200 for every job that exists, whatever its state; 404 means only "no such job".',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: JobIdParams,
        response: {
          200: jsonResponse(JobSchema, { description: 'The job, in any state', example: examples.succeededJob }),
          ...errorResponses(400, 401, 403, 404, 414, 422),
        },
      },
    },
    async (request) => {
      const job = await jobs.findVisible(request.principal, request.params.id);
      if (job === undefined) throw new NotFoundError(`job ${request.params.id}`);
      return job;
    },
  );

  app.post(
    '/v1/jobs/:id/cancel',
    {
      onRequest: app.auth('cancel'),
      config: { audit: { action: 'job.cancel' } },
      schema: {
        operationId: 'cancelJob',
        summary: 'Cancel a job',
        description:
          'Idempotent. A queued job is never started; a running one gets SIGTERM, then SIGKILL after the grace period (GANTRY_STOP_GRACE_SECONDS), and ends `cancelled`. A finished job is returned unchanged.',
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: JobIdParams,
        response: {
          202: jsonResponse(JobSchema, {
            description: 'Cancellation requested (or the job had already ended); the job as it is now',
            example: {
              ...examples.queuedJob,
              state: 'cancelled',
              position: null,
              reason: 'cancelled before it started',
              finishedAt: '2026-01-05T09:31:00.000Z',
            },
          }),
          ...errorResponses(400, 401, 403, 404, 414, 422),
        },
      },
    },
    async (request, reply) => reply.code(202).send(await jobs.cancel(request.principal, request.params.id)),
  );
};
