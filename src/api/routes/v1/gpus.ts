import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { GpuAllocator } from '../../../gpu/allocator.js';
import { type GpuHealthBook, GpuHealthSchema } from '../../../gpu/health/state.js';
import type { GpuDevice } from '../../../gpu/inventory.js';
import type { JobService } from '../../../jobs/service.js';
import { NotFoundError } from '../../../model/errors.js';
import { JobSchema, JobSpecSchema } from '../../../model/job.js';
import type { Principal } from '../../../model/principal.js';
import { examples } from '../../examples.js';
import { HttpProblem } from '../../problems.js';
import { errorResponses, jsonResponse, problemResponse, type RouteDeps } from '../common.js';

export const GpuSchema = z
  .object({
    index: z.number().int(),
    uuid: z.string(),
    name: z.string(),
    memoryMiB: z.number().int(),
    allocatedMemoryMiB: z.number().int().describe('Memory declared by the jobs holding the card (the whole card for exclusive use).'),
    holders: z
      .array(
        z.object({
          jobId: z.string(),
          memoryMiB: z.number().int().nullable().describe('Declared share, or null for exclusive use.'),
        }),
      )
      .describe('The jobs holding the card: only the caller’s own, unless the token is an admin’s.'),
    health: GpuHealthSchema,
  })
  .meta({ id: 'Gpu' });

export const GpuListSchema = z
  .object({ driver: z.enum(['nvidia', 'cdi', 'devices', 'env']), items: z.array(GpuSchema) })
  .meta({ id: 'GpuList' });

const GpuParams = z.object({ uuid: z.string().min(1).max(128).describe('The card’s UUID (`GPU-…`), as GET /v1/gpus lists it') });
const DrainBody = z
  .object({ reason: z.string().min(1).max(500).optional().describe('Why, for whoever looks at the card next.') })
  .nullish()
  .meta({
    id: 'GpuDrain',
    description: 'Optional: a POST without a body drains with no reason given.',
    example: { reason: 'reseating the card' },
  });

/** What a smoke job runs: the rest of its spec is Gantry's (the card by id, a name, the admin as owner). */
const SmokeBody = JobSpecSchema.pick({ image: true, command: true, entrypoint: true, env: true, timeoutSeconds: true, pullPolicy: true })
  .strict()
  .meta({ id: 'GpuSmokeJob', example: { image: 'local/cuda-check:latest', command: ['python', 'check.py'], timeoutSeconds: 300 } });
/** A smoke job runs no longer than this unless its body says otherwise. */
const SMOKE_TIMEOUT_SECONDS = 600;
const noSuchGpu = problemResponse(404, 'No such GPU on this node', examples.gpuNotFound);
const notAdmin = problemResponse(403, 'The token is not an admin’s (drain and undrain need the `admin` scope)', examples.notAdmin);

/**
 * A card as the caller may see it: the memory its holders declared counts
 * every holder, but only the caller's own jobs are named among them (and
 * as the card's smoke job), unless the caller is an admin, as /v1/nodes.
 */
async function view(
  gpus: GpuAllocator,
  health: GpuHealthBook,
  jobs: JobService,
  principal: Principal,
  d: GpuDevice,
): Promise<z.infer<typeof GpuSchema>> {
  const all = gpus.holders(d.uuid);
  const allocatedMemoryMiB = all.some((h) => h.memoryMiB === null) ? d.memoryMiB : all.reduce((s, h) => s + (h.memoryMiB ?? 0), 0);
  const mayName = async (id: string) => principal.isAdmin || (await jobs.findVisible(principal, id)) !== undefined;
  const holders = [];
  for (const h of all) if (await mayName(h.jobId)) holders.push({ jobId: h.jobId, memoryMiB: h.memoryMiB });
  const state = health.get(d.uuid);
  const smokeJob = state.smokeJob !== null && (await mayName(state.smokeJob)) ? state.smokeJob : null;
  const { index, uuid, name, memoryMiB } = d;
  return { index, uuid, name, memoryMiB, allocatedMemoryMiB, holders, health: { ...state, smokeJob } };
}

/** /v1/gpus: this node's cards, who holds what, each card's health, and the admin's drain switch per card. */
export const gpuRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { gpus, health, config, jobs }) => {
  app.get(
    '/v1/gpus',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'listGpus',
        summary: 'GPUs on this host, the jobs that hold them, and their health',
        tags: ['gpus'],
        security: [{ bearer: [] }],
        response: {
          200: jsonResponse(GpuListSchema, {
            description:
              'Every GPU Gantry manages, with its holders (only the caller’s own jobs, unless the token is an admin’s) and health',
            example: examples.gpuList,
          }),
          ...errorResponses(401, 403),
        },
      },
    },
    async (request) => ({
      driver: config.gpus.driver,
      items: await Promise.all(gpus.devices.map((d) => view(gpus, health, jobs, request.principal, d))),
    }),
  );

  app.post(
    '/v1/gpus/:uuid/smoke',
    {
      onRequest: app.auth('admin'),
      config: { audit: { action: 'gpu.smoke' } },
      schema: {
        operationId: 'smokeGpu',
        summary: 'Check a GPU out of service with a smoke job: if it succeeds, the card is healthy again',
        description:
          'Admin only. Submits a job, owned by the admin, that asks for this card by id (its `name` is `gpu-smoke`): the only job the card is ' +
          'given to while it is unhealthy or drained. When the job succeeds, the card is healthy again; when it fails (or is cancelled, or ' +
          'times out), the card stays out of service and its `reason` says so. 409 when the card is healthy or a smoke job checks it already. ' +
          'Follow the job like any other (Location).',
        tags: ['gpus'],
        security: [{ bearer: [] }],
        params: GpuParams,
        body: SmokeBody,
        response: {
          202: jsonResponse(JobSchema, { description: 'The smoke job, queued', example: examples.queuedJob }),
          ...errorResponses(400, 401, 413, 414, 415, 422),
          403: notAdmin,
          404: noSuchGpu,
          409: problemResponse(409, 'The card is healthy, or a smoke job checks it already', examples.gpuInService),
        },
      },
    },
    async (request, reply) => {
      const { uuid } = request.params;
      if (!gpus.devices.some((d) => d.uuid === uuid)) throw new NotFoundError(`GPU ${uuid}`);
      const now = health.get(uuid);
      if (now.state === 'healthy' || now.smokeJob !== null) {
        throw new HttpProblem(
          409,
          'gpu-in-service',
          'Nothing to check',
          now.state === 'healthy' ? `GPU ${uuid} is healthy` : `smoke job ${now.smokeJob} checks GPU ${uuid} already`,
        );
      }
      const { job } = await jobs.submit(
        request.principal,
        { timeoutSeconds: SMOKE_TIMEOUT_SECONDS, ...request.body, name: 'gpu-smoke', gpus: { ids: [uuid] } },
        { idempotencyKey: null, requestId: request.id },
      );
      // A smoke job that lost the race with another reaches no card: it is cancelled rather than left waiting.
      if (!(await health.smoke(uuid, job.id))) await jobs.cancel(request.principal, job.id);
      reply.header('Location', `/v1/jobs/${job.id}`);
      return reply.code(202).send(await jobs.get(request.principal, job.id));
    },
  );

  for (const [action, drained] of [
    ['drain', true],
    ['undrain', false],
  ] as const) {
    app.post(
      `/v1/gpus/:uuid/${action}`,
      {
        onRequest: app.auth('admin'),
        config: { audit: { action: drained ? 'gpu.drain' : 'gpu.undrain' } },
        schema: {
          operationId: drained ? 'drainGpu' : 'undrainGpu',
          summary: drained
            ? 'Drain a GPU: jobs on it finish, no new job gets it'
            : 'Undrain a GPU: it is healthy again and new jobs may get it',
          description: drained
            ? 'Admin only. Idempotent. A job on the card carries on to its end; no new job gets the card until it is undrained. ' +
              'An unhealthy card stays unhealthy (its fault says more). The state outlives restarts.'
            : 'Admin only. Idempotent. Clears `unhealthy` too: the admin says the card is fine (reset or replaced). ' +
              'A fault nvidia-smi still reports (an ECC count, a failed row remapper) makes it unhealthy again at the next health poll.',
          tags: ['gpus'],
          security: [{ bearer: [] }],
          params: GpuParams,
          ...(drained ? { body: DrainBody } : {}),
          response: {
            200: jsonResponse(GpuSchema, {
              description: drained ? 'The card, drained' : 'The card, healthy',
              example: drained
                ? {
                    ...examples.gpuList.items[1]!,
                    health: {
                      state: 'drained',
                      code: 'drained',
                      reason: 'reseating the card',
                      since: '2026-01-05T09:40:00.000Z',
                      by: 'admin',
                      smokeJob: null,
                    },
                  }
                : examples.gpuList.items[1]!,
            }),
            ...errorResponses(400, 401, 414, 422, ...(drained ? [413, 415] : [])),
            403: notAdmin,
            404: noSuchGpu,
          },
        },
      },
      async (request) => {
        const { uuid } = request.params;
        const device = gpus.devices.find((d) => d.uuid === uuid);
        if (!device) throw new NotFoundError(`GPU ${uuid}`);
        if (drained) {
          const reason = (request.body as z.infer<typeof DrainBody>)?.reason;
          await health.drain(uuid, request.principal.owner, reason);
        } else {
          await health.undrain(uuid);
        }
        return view(gpus, health, jobs, request.principal, device);
      },
    );
  }
};
