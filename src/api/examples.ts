import type { AuditRecord } from '../model/audit.js';
import type { Job, JobSpec } from '../model/job.js';
import type { LogLine } from '../model/log.js';
import type { Node } from '../model/node.js';
import type { UsageReport } from '../model/usage.js';
import { PROBLEM_BASE } from './problems.js';

/**
 * Examples shown in the OpenAPI document (request and response media).
 * Typed against the schemas' types here, and checked against the generated
 * JSON Schemas by test/openapi.test.ts, so they cannot drift either.
 */

const spec: JobSpec = {
  image: 'local/busybox:latest',
  command: ['sh', '-c', 'echo training; echo accuracy=0.93'],
  env: { EPOCHS: '3' },
  resources: { memoryMiB: 2048, cpus: 4 },
  timeoutSeconds: 3600,
  labels: { team: 'ml', dag: 'train_resnet' },
  name: 'train-resnet',
  gpus: { count: 1 },
};

const base = {
  id: '5b7c1a52-8a0e-4d0f-9d3e-2f6c0b8e1a47',
  name: 'train-resnet',
  owner: 'airflow',
  labels: { team: 'ml', dag: 'train_resnet' },
  requestId: 'a4f4c3b2-0d7e-4a43-9b0e-6f4f3c1d2e10',
  spec,
  pull: null,
  cancelRequested: false,
  notBefore: null,
} as const;

export const examples = {
  jobSpec: spec,
  queuedJob: {
    ...base,
    state: 'queued',
    position: 0,
    waiting: { code: 'gpus', estimatedStartAt: '2026-01-05T10:42:00.000Z' },
    exitCode: null,
    reason: "waiting for GPUs, expected free by 2026-01-05T10:42:00.000Z at the latest (the running jobs' timeouts)",
    result: null,
    createdAt: '2026-01-05T09:30:00.000Z',
    startedAt: null,
    finishedAt: null,
    gpus: [],
    node: null,
    attempt: 1,
    attempts: [],
  } satisfies Job,
  succeededJob: {
    ...base,
    state: 'succeeded',
    position: null,
    waiting: null,
    exitCode: 0,
    reason: null,
    result: 'accuracy=0.93',
    createdAt: '2026-01-05T09:30:00.000Z',
    startedAt: '2026-01-05T09:30:01.250Z',
    finishedAt: '2026-01-05T09:42:13.900Z',
    gpus: ['GPU-3c5a1b3e-9a44-4f2f-8d1e-0f6b7d2a9c11'],
    node: 'gpu-host-1',
    attempt: 1,
    attempts: [
      {
        attempt: 1,
        node: 'gpu-host-1',
        gpus: ['GPU-3c5a1b3e-9a44-4f2f-8d1e-0f6b7d2a9c11'],
        outcome: 'succeeded',
        cause: null,
        retried: false,
        reason: null,
        exitCode: 0,
        startedAt: '2026-01-05T09:30:01.250Z',
        finishedAt: '2026-01-05T09:42:13.900Z',
        firstLogSeq: 1,
        lastLogSeq: 2,
      },
    ],
  } satisfies Job,
  node: {
    name: 'gpu-host-1',
    state: 'up',
    drained: false,
    labels: { zone: 'a', nvlink: 'true' },
    heartbeatAgeSeconds: 3.2,
    leaseSeconds: 30,
    startedAt: '2026-01-05T08:00:00.000Z',
    version: '1.0.0',
    gpus: [
      {
        index: 0,
        uuid: 'GPU-3c5a1b3e-9a44-4f2f-8d1e-0f6b7d2a9c11',
        name: 'NVIDIA H200',
        memoryMiB: 143771,
        allocated: true,
        holders: ['5b7c1a52-8a0e-4d0f-9d3e-2f6c0b8e1a47'],
      },
      { index: 1, uuid: 'GPU-8f0e2d4c-1b6a-4c3e-a5d7-9e1f2a3b4c5d', name: 'NVIDIA H200', memoryMiB: 143771, allocated: false, holders: [] },
    ],
    running: 1,
  } satisfies Node,
  nodeNotFound: {
    type: `${PROBLEM_BASE}not-found`,
    title: 'Not found',
    status: 404,
    detail: 'node gpu-host-9 does not exist',
    instance: '/v1/nodes/gpu-host-9',
  },
  notAdmin: {
    type: `${PROBLEM_BASE}forbidden`,
    title: 'Forbidden',
    status: 403,
    detail: 'this token lacks the "admin" scope',
    instance: '/v1/nodes/gpu-host-1/drain',
  },
  auditRecords: [
    {
      seq: 43,
      at: '2026-01-05T09:45:02.318Z',
      node: 'gpu-host-1',
      actor: 'admin',
      action: 'node.drain',
      target: 'gpu-host-1',
      outcome: 'ok',
      status: 200,
      problemType: null,
      requestId: 'c9e2d0f4-5b1a-4c7e-8f3d-1a2b3c4d5e6f',
      detail: {},
    },
    {
      seq: 42,
      at: '2026-01-05T09:31:40.007Z',
      node: 'gpu-host-1',
      actor: 'airflow',
      action: 'job.submit',
      target: null,
      outcome: 'refused',
      status: 422,
      problemType: `${PROBLEM_BASE}policy`,
      requestId: '7d1e6c2a-3f4b-4e8a-9c0d-5e6f7a8b9c0d',
      detail: { fields: ['body.image'] },
    },
    {
      seq: 41,
      at: '2026-01-05T09:30:00.004Z',
      node: 'gpu-host-2',
      actor: 'airflow',
      action: 'job.submit',
      target: base.id,
      outcome: 'ok',
      status: 201,
      problemType: null,
      requestId: base.requestId,
      detail: {},
    },
  ] satisfies AuditRecord[],
  logLine: { seq: 2, stream: 'stdout', time: '2026-01-05T09:42:13.512Z', line: 'accuracy=0.93' } satisfies LogLine,
  logText: 'training\naccuracy=0.93\n',
  gpuList: {
    driver: 'nvidia' as const,
    items: [
      {
        index: 0,
        uuid: 'GPU-3c5a1b3e-9a44-4f2f-8d1e-0f6b7d2a9c11',
        name: 'NVIDIA H100 80GB HBM3',
        memoryMiB: 81559,
        allocatedMemoryMiB: 81559,
        holders: [{ jobId: '5b7c1a52-8a0e-4d0f-9d3e-2f6c0b8e1a47', memoryMiB: null }],
      },
      {
        index: 1,
        uuid: 'GPU-8f0e2d4c-1b6a-4c3e-a5d7-9e1f2a3b4c5d',
        name: 'NVIDIA H100 80GB HBM3',
        memoryMiB: 81559,
        allocatedMemoryMiB: 0,
        holders: [],
      },
    ],
  },
  usageReport: {
    from: '2026-01-01T00:00:00.000Z',
    to: '2026-02-01T00:00:00.000Z',
    items: [
      {
        owner: 'airflow',
        gpuSeconds: 612000,
        gpuHours: 170,
        weightedGpuHours: 290,
        jobs: 41,
        attempts: 44,
        byModel: [
          { model: 'NVIDIA H200', weight: 2, gpuSeconds: 432000, gpuHours: 120, weightedGpuHours: 240 },
          { model: 'NVIDIA A100-SXM4-80GB', weight: 1, gpuSeconds: 180000, gpuHours: 50, weightedGpuHours: 50 },
        ],
      },
      {
        owner: 'team, "vision"',
        gpuSeconds: 7200,
        gpuHours: 2,
        weightedGpuHours: 4,
        jobs: 1,
        attempts: 1,
        byModel: [{ model: 'NVIDIA H200', weight: 2, gpuSeconds: 7200, gpuHours: 2, weightedGpuHours: 4 }],
      },
    ],
  } satisfies UsageReport,
};

/** One problem+json example per status, as Gantry sends them. */
export const problemExamples: Record<number, Record<string, unknown>> = {
  400: {
    type: `${PROBLEM_BASE}bad-request`,
    title: 'Bad request',
    status: 400,
    detail: "Body is not valid JSON but content-type is set to 'application/json'",
    instance: '/v1/jobs',
  },
  401: {
    type: `${PROBLEM_BASE}unauthorized`,
    title: 'Authentication required',
    status: 401,
    detail: 'send Authorization: Bearer <token>',
    instance: '/v1/jobs',
  },
  403: {
    type: `${PROBLEM_BASE}forbidden`,
    title: 'Forbidden',
    status: 403,
    detail: 'this token lacks the "submit" scope',
    instance: '/v1/jobs',
  },
  404: {
    type: `${PROBLEM_BASE}not-found`,
    title: 'Not found',
    status: 404,
    detail: `job ${base.id} does not exist`,
    instance: `/v1/jobs/${base.id}`,
  },
  413: {
    type: `${PROBLEM_BASE}payload-too-large`,
    title: 'Payload too large',
    status: 413,
    detail: 'Request body is too large',
    instance: '/v1/jobs',
  },
  414: {
    type: `${PROBLEM_BASE}uri-too-long`,
    title: 'URI too long',
    status: 414,
    detail: 'a path parameter is longer than any Gantry id',
    instance: '/v1/jobs/aaaa…/logs',
  },
  415: {
    type: `${PROBLEM_BASE}unsupported-media-type`,
    title: 'Unsupported media type',
    status: 415,
    detail: 'Unsupported Media Type: text/plain',
    instance: '/v1/jobs',
  },
  422: {
    type: `${PROBLEM_BASE}policy`,
    title: 'Refused by policy',
    status: 422,
    detail: 'body.image: image "docker.io/library/alpine:3" is not in GANTRY_IMAGE_ALLOWLIST',
    instance: '/v1/jobs',
    errors: [{ field: 'body.image', message: 'image "docker.io/library/alpine:3" is not in GANTRY_IMAGE_ALLOWLIST' }],
  },
  429: {
    type: `${PROBLEM_BASE}quota-exceeded`,
    title: 'Quota exceeded',
    status: 429,
    detail:
      'team "ml" has 1000 jobs queued, its maxQueued in GANTRY_QUOTAS_FILE; nothing was stored, try again once some have left the queue',
    instance: '/v1/jobs',
  },
  503: {
    type: `${PROBLEM_BASE}store-unavailable`,
    title: 'Store unavailable',
    status: 503,
    detail: 'the store cannot be written: disk I/O error; nothing was stored, try again later',
    instance: '/v1/jobs',
  },
  507: {
    type: `${PROBLEM_BASE}store-full`,
    title: 'Storage full',
    status: 507,
    detail: "the store's disk is full: database or disk is full; nothing was stored, try again later",
    instance: '/v1/jobs',
  },
};
