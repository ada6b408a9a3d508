import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { examples } from '../../examples.js';
import { errorResponses, jsonResponse, type RouteDeps } from '../common.js';

export const GpuSchema = z
  .object({
    index: z.number().int(),
    uuid: z.string(),
    name: z.string(),
    memoryMiB: z.number().int(),
    allocatedMemoryMiB: z.number().int().describe('Memory declared by the jobs holding the card (the whole card for exclusive use).'),
    holders: z.array(
      z.object({
        jobId: z.string(),
        memoryMiB: z.number().int().nullable().describe('Declared share, or null for exclusive use.'),
      }),
    ),
  })
  .meta({ id: 'Gpu' });

export const GpuListSchema = z
  .object({ driver: z.enum(['nvidia', 'cdi', 'devices', 'env']), items: z.array(GpuSchema) })
  .meta({ id: 'GpuList' });

/** /v1/gpus: the inventory and who holds what. */
export const gpuRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { gpus, config }) => {
  app.get(
    '/v1/gpus',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'listGpus',
        summary: 'GPUs on this host and the jobs that hold them',
        tags: ['gpus'],
        security: [{ bearer: [] }],
        response: {
          200: jsonResponse(GpuListSchema, { description: 'Every GPU Gantry manages, with its holders', example: examples.gpuList }),
          ...errorResponses(401, 403),
        },
      },
    },
    async () => ({
      driver: config.gpus.driver,
      items: gpus.devices.map((d) => {
        const holders = gpus.holders(d.uuid).map((h) => ({ jobId: h.jobId, memoryMiB: h.memoryMiB }));
        const allocatedMemoryMiB = holders.some((h) => h.memoryMiB === null)
          ? d.memoryMiB
          : holders.reduce((s, h) => s + (h.memoryMiB ?? 0), 0);
        return { ...d, allocatedMemoryMiB, holders };
      }),
    }),
  );
};
