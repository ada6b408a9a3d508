import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { NODE_NAME_PATTERN, NodeSchema } from '../../../model/node.js';
import { examples } from '../../examples.js';
import { errorResponses, jsonResponse, problemResponse, type RouteDeps } from '../common.js';

/** A node's name as GANTRY_NODE_NAME allows it: a bad one is a 422, never a lookup. */
const NodeNameParams = z.object({
  name: z
    .string()
    .regex(NODE_NAME_PATTERN, 'must be a node name: letters, digits, "_", "." and "-", at most 253 characters')
    .describe('The node’s name (GANTRY_NODE_NAME)'),
});

export const NodeListSchema = z.object({ items: z.array(NodeSchema) }).meta({ id: 'NodeList' });

const noSuchNode = problemResponse(404, 'No such node', examples.nodeNotFound);
const notAdmin = problemResponse(403, 'The token is not an admin’s (drain and undrain need the `admin` scope)', examples.notAdmin);

/**
 * /v1/nodes: the fleet's nodes (every Gantry sharing the store; one with the
 * embedded store), and the admin's drain switch. The holders of a node's
 * GPUs are the caller's own jobs, unless the caller is an admin.
 */
export const nodeRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { nodes }) => {
  app.get(
    '/v1/nodes',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'listNodes',
        summary: 'The fleet’s nodes, their state, drain switch, GPUs and running jobs',
        description:
          'Every node that ever joined the fleet: `up` while it renews its lease, `lost` once the lease expired. ' +
          'A GPU’s `holders` lists only the caller’s own jobs, unless the token is an admin’s.',
        tags: ['nodes'],
        security: [{ bearer: [] }],
        response: {
          200: jsonResponse(NodeListSchema, { description: 'Every node, by name', example: { items: [examples.node] } }),
          ...errorResponses(401, 403),
        },
      },
    },
    async (request) => ({ items: await nodes.list(request.principal) }),
  );

  app.get(
    '/v1/nodes/:name',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'getNode',
        summary: 'Get a node',
        tags: ['nodes'],
        security: [{ bearer: [] }],
        params: NodeNameParams,
        response: {
          200: jsonResponse(NodeSchema, { description: 'The node', example: examples.node }),
          ...errorResponses(400, 401, 403, 414, 422),
          404: noSuchNode,
        },
      },
    },
    async (request) => nodes.get(request.principal, request.params.name),
  );

  for (const [action, drained] of [
    ['drain', true],
    ['undrain', false],
  ] as const) {
    app.post(
      `/v1/nodes/:name/${action}`,
      {
        onRequest: app.auth('admin'),
        config: { audit: { action: drained ? 'node.drain' : 'node.undrain' } },
        schema: {
          operationId: drained ? 'drainNode' : 'undrainNode',
          summary: drained ? 'Drain a node: its running jobs finish, nothing new starts there' : 'Undrain a node: it takes new jobs again',
          description: drained
            ? 'Admin only. Idempotent. Jobs the node runs carry on to their end; queued jobs wait for another node ' +
              '(or, with one node, stay queued saying the node is drained) until it is undrained. The switch outlives restarts.'
            : 'Admin only. Idempotent. The node starts queued jobs again.',
          tags: ['nodes'],
          security: [{ bearer: [] }],
          params: NodeNameParams,
          response: {
            200: jsonResponse(NodeSchema, {
              description: drained ? 'The node, drained' : 'The node, taking jobs',
              example: { ...examples.node, drained },
            }),
            ...errorResponses(400, 401, 414, 422, 503, 507),
            403: notAdmin,
            404: noSuchNode,
          },
        },
      },
      async (request) => nodes.setDrained(request.principal, request.params.name, drained),
    );
  }
};
