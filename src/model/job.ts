import { z } from 'zod';
import { AttemptSchema, RetryCauseSchema } from './attempt.js';
import { GpuTelemetrySchema } from './gpu-telemetry.js';
import { WaitingSchema } from './queue.js';
import { JOB_STATES } from './states.js';

/** Label keys under this prefix are Gantry's own bookkeeping on the container. */
export const RESERVED_LABEL_PREFIX = 'dev.gantry.';
/** Where Gantry mounts its own folder in a job's container (the preemption notice): no spec mount or secret file may go in it or over it. */
export const GANTRY_CONTAINER_DIR = '/run/gantry';

/**
 * Docker's reference grammar (distribution/reference): [domain[:port]/]path[:tag][@digest],
 * so a malformed name is refused at submit instead of failing the job later.
 */
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
export const IMAGE_REFERENCE = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*` +
    '(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$',
);

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a valid environment variable name')
  .max(256);
/** The shortest private value: a shorter one cannot be redacted without mangling ordinary output (as secrets). */
export const PRIVATE_VALUE_MIN_LENGTH = 4;
/** What the API shows in place of a private value. */
export const PRIVATE_VALUE_SHOWN = '[private]';

const absolutePath = z
  .string()
  .max(4096)
  .regex(/^\//, 'must be an absolute path')
  .refine((p) => !p.split('/').includes('..'), 'must not contain ".."');

export const GpuRequestSchema = z
  .object({
    count: z.number().int().min(1).max(64).optional().describe('Number of GPUs; Gantry picks free ones.'),
    ids: z.array(z.string().min(1).max(128)).min(1).max(64).optional().describe('Specific GPUs, by UUID (GPU-…) or index ("0").'),
    memoryMiB: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'Share one card by declared memory (with count 1). Accounting only: Gantry does not enforce the limit inside the container.',
      ),
  })
  .strict()
  .superRefine((g, ctx) => {
    if ((g.count === undefined) === (g.ids === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of "count" or "ids"', path: ['count'] });
    }
    if (g.memoryMiB !== undefined && g.count !== 1) {
      ctx.addIssue({ code: 'custom', message: 'memory sharing needs "count": 1', path: ['memoryMiB'] });
    }
    if (g.ids && new Set(g.ids).size !== g.ids.length) {
      ctx.addIssue({ code: 'custom', message: 'GPU ids must be distinct', path: ['ids'] });
    }
  })
  .meta({
    id: 'GpuRequest',
    example: { count: 1 },
    // The superRefine rules above, stated in the document too so generated
    // clients and fuzzers know them: exactly one of count/ids, and memory
    // sharing only with count 1.
    oneOf: [
      { required: ['count'], not: { required: ['ids'] } },
      { required: ['ids'], not: { anyOf: [{ required: ['count'] }, { required: ['memoryMiB'] }] } },
    ],
    dependentSchemas: { memoryMiB: { properties: { count: { const: 1 } } } },
  });

export const MountSchema = z
  .object({
    source: z.string().min(1).max(4096).describe('Host path (absolute) or named volume; must fall within GANTRY_MOUNT_ALLOWLIST.'),
    target: absolutePath.describe('Path inside the container.'),
    readOnly: z.boolean().default(true),
  })
  .strict()
  .meta({ id: 'Mount' });

export const ResourcesSchema = z
  .object({
    memoryMiB: z.number().int().min(4).optional(),
    cpus: z.number().positive().max(1024).optional(),
    shmMiB: z.number().int().min(1).optional(),
  })
  .strict()
  .meta({ id: 'Resources' });

export const PullPolicySchema = z.enum(['missing', 'always', 'never']).meta({ id: 'PullPolicy' });

/** A node label: `key=value` as set by GANTRY_NODE_LABELS. */
const nodeLabelKey = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._\-/]+$/, 'invalid label key');

export const PlacementSchema = z
  .object({
    node: z.string().min(1).max(253).optional().describe('Run only on the node of this name (GANTRY_NODE_NAME).'),
    nodeLabels: z
      .record(nodeLabelKey, z.string().max(256))
      .optional()
      .describe('Run only on nodes carrying every one of these labels (GANTRY_NODE_LABELS).'),
    gpuModel: z
      .string()
      .min(1)
      .max(128)
      .optional()
      .describe('Run only on GPUs whose model name contains this text, case-insensitively (e.g. "H200").'),
  })
  .strict()
  .meta({ id: 'Placement', example: { nodeLabels: { zone: 'a' }, gpuModel: 'H200' } });

export const RetryRuleSchema = z
  .object({
    cause: RetryCauseSchema,
    exitCodes: z
      .array(z.number().int().min(1).max(255))
      .min(1)
      .max(64)
      .optional()
      .describe('Only these exit codes (with cause exit_code only); any non-zero code when absent.'),
    action: z.enum(['retry', 'fail']).describe('retry: run the job again as a new attempt, if its budget allows; fail: end it now.'),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.exitCodes !== undefined && r.cause !== 'exit_code') {
      ctx.addIssue({ code: 'custom', message: '"exitCodes" only narrows cause "exit_code"', path: ['exitCodes'] });
    }
  })
  .meta({
    id: 'RetryRule',
    example: { cause: 'exit_code', exitCodes: [75], action: 'retry' },
    // The superRefine rule above, stated in the document too.
    dependentSchemas: { exitCodes: { properties: { cause: { const: 'exit_code' } } } },
  });

/** The longest backoff, and the default cap of one. */
export const BACKOFF_MAX_SECONDS = 86_400;

export const BackoffSchema = z
  .object({
    initialSeconds: z.number().int().min(1).max(BACKOFF_MAX_SECONDS).describe('The wait before the first retry.'),
    factor: z.number().min(1).max(10).default(2).describe('Each later retry waits this many times longer than the one before.'),
    maxSeconds: z
      .number()
      .int()
      .min(1)
      .max(BACKOFF_MAX_SECONDS)
      .optional()
      .describe(`No retry waits longer than this (${BACKOFF_MAX_SECONDS} s when absent).`),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.maxSeconds !== undefined && b.maxSeconds < b.initialSeconds) {
      ctx.addIssue({ code: 'custom', message: 'must be at least "initialSeconds"', path: ['maxSeconds'] });
    }
  })
  .meta({ id: 'Backoff', example: { initialSeconds: 30, factor: 2, maxSeconds: 600 } });

export const RetrySchema = z
  .object({
    maxAttempts: z
      .number()
      .int()
      .min(1)
      .max(20)
      .describe(
        "Attempts in all, the first one included, for the job's own causes; node_lost and preempted have a budget of their own of the same size, so losing a node never costs one of these.",
      ),
    on: z
      .array(RetryCauseSchema)
      .min(1)
      .optional()
      .describe(
        'Shorthand for rules {cause, action: "retry"}, checked after `rules`. node_lost: the node running it stopped renewing its lease.',
      ),
    rules: z
      .array(RetryRuleSchema)
      .min(1)
      .max(32)
      .optional()
      .describe(
        'What to do when an attempt ends for a cause: the first rule that matches decides; an end no rule (nor `on`) matches is final.',
      ),
    backoff: BackoffSchema.optional().describe(
      'How long a retried job waits in the queue before its next attempt may start; no wait when absent.',
    ),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.on === undefined && r.rules === undefined) {
      ctx.addIssue({ code: 'custom', message: 'give "on", "rules" or both', path: ['on'] });
    }
  })
  .meta({
    id: 'Retry',
    example: {
      maxAttempts: 3,
      on: ['node_lost'],
      rules: [
        { cause: 'exit_code', exitCodes: [2], action: 'fail' },
        { cause: 'exit_code', action: 'retry' },
      ],
      backoff: { initialSeconds: 30, factor: 2, maxSeconds: 600 },
    },
    // The superRefine rule above, stated in the document too.
    anyOf: [{ required: ['on'] }, { required: ['rules'] }],
  });

/** A secret's name in the operator's secret source: a file name, so no path separators and no leading dot. */
export const SECRET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export const SecretRefSchema = z
  .object({
    name: z
      .string()
      .regex(SECRET_NAME, 'letters, digits, "_", "." and "-", not starting with "." (at most 128)')
      .describe('The secret, by name.'),
    env: envName.optional().describe('Deliver the value as this environment variable.'),
    file: absolutePath
      .optional()
      .describe("Deliver the value as a read-only file at this path in the container (on a tmpfs, never on the image's layers)."),
  })
  .strict()
  .superRefine((s, ctx) => {
    if ((s.env === undefined) === (s.file === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of "env" or "file"', path: ['env'] });
    }
  })
  .meta({
    id: 'SecretRef',
    example: { name: 'hf-token', env: 'HF_TOKEN' },
    oneOf: [
      { required: ['env'], not: { required: ['file'] } },
      { required: ['file'], not: { required: ['env'] } },
    ],
  });

export const JobSpecSchema = z
  .object({
    image: z
      .string()
      .min(1)
      .max(512)
      .regex(IMAGE_REFERENCE, 'must be an image reference like "local/busybox:latest" (Docker\'s reference grammar)'),
    command: z.array(z.string().max(65536)).min(1).max(4096),
    entrypoint: z.array(z.string().max(65536)).max(4096).optional(),
    env: z
      .record(envName, z.string().max(131072))
      .optional()
      .refine((e) => e === undefined || Object.keys(e).length <= 1024, 'at most 1024 variables'),
    privateEnv: z
      .record(envName, z.string().min(PRIVATE_VALUE_MIN_LENGTH).max(131072))
      .optional()
      .refine((e) => e === undefined || Object.keys(e).length <= 1024, 'at most 1024 variables')
      .describe(
        `Environment variables whose values are private: set in the container like env, redacted from the job's logs and result like secrets (each value at least ${PRIVATE_VALUE_MIN_LENGTH} characters, or it could not be redacted), and never shown by the API (the job's view shows "${PRIVATE_VALUE_SHOWN}" instead).`,
      )
      .meta({ example: { API_KEY: 'sk-0123456789' } }),
    secrets: z
      .array(SecretRefSchema)
      .max(64)
      .optional()
      .describe(
        "Secrets from the operator's secret source, by name: the values never enter Gantry's database or API, and are redacted from the job's logs.",
      ),
    workdir: absolutePath.optional(),
    user: z
      .string()
      .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/, 'must be "user", "uid" or "uid:gid"')
      .max(128)
      .optional()
      .describe(
        'Who the job runs as. Defaults to GANTRY_DEFAULT_USER; uid or gid 0, and names (which the image could map to 0), only for owners in GANTRY_ALLOW_ROOT_OWNERS.',
      ),
    resources: ResourcesSchema.optional(),
    mounts: z.array(MountSchema).max(64).optional(),
    network: z.string().min(1).max(128).optional().describe('Defaults to "none"; must be in GANTRY_NETWORKS.'),
    timeoutSeconds: z.number().int().min(1).optional(),
    resultFile: z
      .boolean()
      .optional()
      .describe(
        "The job may write one JSON document (at most GANTRY_RESULT_MAX_BYTES) to the file named by GANTRY_RESULT_FILE (/run/gantry-result/result.json); it becomes the job's `result`, secrets and private values redacted. A job that writes none keeps its last stdout line as `result`.",
      )
      .meta({ example: true }),
    stopGraceSeconds: z
      .number()
      .int()
      .min(0)
      .max(3600)
      .optional()
      .describe(
        'Seconds from SIGTERM to SIGKILL when the job is stopped (cancel, timeout, preemption); at most GANTRY_MAX_STOP_GRACE_SECONDS. Default: GANTRY_STOP_GRACE_SECONDS.',
      )
      .meta({ example: 60 }),
    labels: z
      .record(
        z
          .string()
          .min(1)
          .max(128)
          .regex(/^[A-Za-z0-9._\-/]+$/, 'invalid label key'),
        z.string().max(1024),
      )
      .optional(),
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "." and "-"')
      .max(128)
      .optional(),
    gpus: GpuRequestSchema.optional(),
    priority: z.number().int().min(-1000).max(1000).optional().describe('Higher runs first; FIFO within a priority.'),
    pullPolicy: PullPolicySchema.optional(),
    placement: PlacementSchema.optional().describe('Where in a fleet the job may run; any node when absent.'),
    retry: RetrySchema.optional().describe('When Gantry runs the job again as a new attempt; never when absent.'),
    preemptible: z
      .boolean()
      .optional()
      .describe(
        'May be stopped to give its GPUs to a job with a better claim (a higher priority, or an owner within its share while this one borrows): ' +
          'it is told first in the file GANTRY_PREEMPT_NOTICE_FILE names, gets SIGTERM and its stop grace (stopGraceSeconds), then SIGKILL, ' +
          'and goes back to the queue as a new attempt that costs it none of its retries. Default false.',
      ),
  })
  .strict()
  .meta({
    id: 'JobSpec',
    example: {
      image: 'local/busybox:latest',
      command: ['sh', '-c', 'echo hello from gantry'],
      resources: { memoryMiB: 256 },
      timeoutSeconds: 600,
      labels: { team: 'ml' },
    },
  });

export type JobSpec = z.infer<typeof JobSpecSchema>;
export type JsonValue = z.infer<typeof JsonValueSchema>;
export type GpuRequest = z.infer<typeof GpuRequestSchema>;
export type Mount = z.infer<typeof MountSchema>;
export type SecretRef = z.infer<typeof SecretRefSchema>;
export type Placement = z.infer<typeof PlacementSchema>;
export type Retry = z.infer<typeof RetrySchema>;
export type RetryRule = z.infer<typeof RetryRuleSchema>;

export const JobStateSchema = z.enum(JOB_STATES).meta({ id: 'JobState' });

/** Any JSON value; its arrays and objects hold any JSON (not spelled out recursively: the OpenAPI document could not name it). */
const JsonValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.unknown()), z.record(z.string(), z.unknown())]);

export const JobSchema = z
  .object({
    id: z.string(),
    name: z.string().nullable(),
    owner: z.string(),
    state: JobStateSchema,
    position: z.number().int().nullable().describe('Place in the queue (0 = next) while queued, else null.'),
    waiting: WaitingSchema.nullable().describe('Why it waits, as a stable code (the text is `reason`), while queued; else null.'),
    exitCode: z.number().int().nullable(),
    reason: z.string().nullable().describe('Why the job ended as it did, or what it waits for.'),
    result: JsonValueSchema.describe(
      "For XCom: the JSON document the job wrote to its result file (`resultFile`), or else the last non-empty stdout line (at most 4 KiB) as a string; null for neither. The last attempt's.",
    ).meta({ example: { accuracy: 0.93, model: 's3://models/run-42' } }),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    gpus: z.array(z.string()).describe('UUIDs of the GPUs allocated to the job.'),
    node: z.string().nullable().describe('The node that runs (or ran) the job; null while no node has taken it.'),
    attempt: z.number().int().min(1).describe('Which attempt this is (1 unless the job was retried).'),
    attempts: z.array(AttemptSchema).describe('The attempts that ended, oldest first: how each ended and which log lines are its.'),
    gpuTelemetry: GpuTelemetrySchema.nullable().describe(
      "What Gantry's GPU sampler (GANTRY_GPU_SAMPLE_SECONDS) measured of the current attempt, updated at each sample while it runs; null when nothing was measured (no GPUs, sampling off, or not started yet). Each ended attempt keeps its own in `attempts`.",
    ),
    notBefore: z
      .string()
      .nullable()
      .describe("The earliest time the current attempt may start: set when a retry waits out the spec's backoff, else null."),
    pull: z
      .object({ status: z.string(), progress: z.string().nullable() })
      .nullable()
      .describe('Image pull progress while the job is pulling.'),
    labels: z.record(z.string(), z.string()),
    cancelRequested: z.boolean().describe('A cancel was asked for; the job ends `cancelled` unless it ends otherwise first.'),
    requestId: z.string().nullable(),
    spec: JobSpecSchema,
  })
  .meta({ id: 'Job' });

export type Job = z.infer<typeof JobSchema>;
