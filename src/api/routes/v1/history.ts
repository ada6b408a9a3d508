import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { GpuAllocator } from '../../../gpu/allocator.js';
import type { TelemetryHistory } from '../../../gpu/telemetry/history.js';
import type { JobService } from '../../../jobs/service.js';
import {
  type CardHolder,
  GpuHistorySchema,
  HistoryQuerySchema,
  JobTelemetryHistorySchema,
  QueueHistorySchema,
} from '../../../model/history.js';
import type { Principal } from '../../../model/principal.js';
import { QUEUE_SPACING_MS, type QueueHistory } from '../../../scheduling/queue-history.js';
import { errorResponses, jsonResponse } from '../common.js';

/** The recent samples the operator page draws, kept in this node's memory. */
export interface OperatorHistory {
  gpus: TelemetryHistory;
  queue: QueueHistory;
}

interface HistoryDeps {
  history: OperatorHistory;
  jobs: JobService;
  gpus: GpuAllocator;
  node: string;
  sampleSeconds: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const HIDDEN: CardHolder = { jobId: null, owner: null };

/** A holder as the principal may see it: another owner's job is only "someone's", for a token that is no admin's. */
const holderFor = (p: Principal) => (h: CardHolder) => (p.isAdmin || h.owner === p.owner ? h : HIDDEN);

/**
 * /v1/gpus/history, /v1/queue/history and /v1/jobs/{id}/telemetry: the
 * recent samples behind the operator page's charts. Memory only, bounded
 * (gpu/telemetry/history.ts); another owner's job is never named to a token
 * that is no admin's.
 */
export const historyRoutes: FastifyPluginAsyncZod<HistoryDeps> = async (app, d) => {
  app.get(
    '/v1/gpus/history',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'getGpuHistory',
        summary: "This node's cards over the last hours: utilisation, memory, power and the jobs that held them",
        description:
          'From the GPU sampler (GANTRY_GPU_SAMPLE_SECONDS), kept in memory by the node (a restart starts afresh). ' +
          'Cards are sampled only while a GPU job runs on the node. A token that is no admin’s sees its own jobs named and every other job as `{jobId: null, owner: null}`.',
        tags: ['gpus'],
        security: [{ bearer: [] }],
        querystring: HistoryQuerySchema,
        response: {
          200: jsonResponse(GpuHistorySchema, { description: 'Each card’s recent points' }),
          ...errorResponses(401, 403, 422),
        },
      },
    },
    async (request) => {
      const since = Date.now() - request.query.hours * 3_600_000;
      const visible = holderFor(request.principal);
      return {
        node: d.node,
        sampleSeconds: d.sampleSeconds,
        spacingSeconds: d.history.gpus.cardSpacingMs / 1000,
        items: d.gpus.devices.map((dev) => ({
          uuid: dev.uuid,
          index: dev.index,
          name: dev.name,
          memoryMiB: dev.memoryMiB,
          points: d.history.gpus.card(dev.uuid, since).map((p) => ({
            time: iso(p.at),
            utilizationPct: p.utilizationPct,
            memoryUsedMiB: p.memoryUsedMiB,
            powerWatts: p.powerWatts,
            holders: p.holders.map(visible),
          })),
        })),
      };
    },
  );

  app.get(
    '/v1/queue/history',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'getQueueHistory',
        summary: 'The queue’s length and waiting times over the last hours',
        description: `One point per ${QUEUE_SPACING_MS / 1000} s, kept in this node's memory (a restart starts afresh). Counts only: no job is named.`,
        tags: ['jobs'],
        security: [{ bearer: [] }],
        querystring: HistoryQuerySchema,
        response: {
          200: jsonResponse(QueueHistorySchema, { description: 'The queue over time' }),
          ...errorResponses(401, 403, 422),
        },
      },
    },
    async (request) => ({
      spacingSeconds: QUEUE_SPACING_MS / 1000,
      points: d.history.queue.since(Date.now() - request.query.hours * 3_600_000),
    }),
  );

  app.get(
    '/v1/jobs/:id/telemetry',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'getJobTelemetry',
        summary: "A job's GPU samples over its life: utilisation, memory and power",
        description:
          'As the node that runs it sampled them, from its memory (a restart starts afresh; a job run on another node has none here). ' +
          "The job's summary per attempt stays on the job (`gpuTelemetry`, `attempts[].gpuTelemetry`); live samples come with `GET …/logs?telemetry=true`.",
        tags: ['jobs'],
        security: [{ bearer: [] }],
        params: z.object({ id: z.string().min(1).max(64).describe('Job id') }),
        response: {
          200: jsonResponse(JobTelemetryHistorySchema, { description: "The job's samples, oldest first" }),
          ...errorResponses(400, 401, 403, 404, 414, 422),
        },
      },
    },
    async (request) => {
      const job = await d.jobs.visibleRecord(request.principal, request.params.id);
      return {
        jobId: job.id,
        points: d.history.gpus.job(job.id).map(({ at, ...rest }) => ({ time: iso(at), ...rest })),
      };
    },
  );
};
