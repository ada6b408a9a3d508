import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/** Comma-separated list → trimmed, non-empty entries. */
const splitList = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);

const csv = z.string().transform(splitList);

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

/** `KEY=VALUE,KEY=VALUE` → record (used for operator-set GPU driver variables). */
const keyValues = z.string().transform((s, ctx) => {
  const out: Record<string, string> = {};
  for (const part of splitList(s)) {
    const eq = part.indexOf('=');
    if (eq <= 0) {
      ctx.addIssue({ code: 'custom', message: `expected KEY=VALUE, got "${part}"` });
      return z.NEVER;
    }
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
});

/** `MODEL=WEIGHT,…` → ordered entries (the first that matches a card is its weight). */
const modelWeights = keyValues.transform((kv, ctx) =>
  Object.entries(kv).map(([model, text]) => {
    const weight = text.trim() === '' ? Number.NaN : Number(text);
    if (!(Number.isFinite(weight) && weight >= 0)) {
      ctx.addIssue({ code: 'custom', message: `weight of "${model}" must be a number of at least 0, got "${text}"` });
    }
    return { model, weight };
  }),
);

/**
 * Every environment variable Gantry reads, each described once, here: what it
 * does and its units in `.describe()`, its default in `.default()` (or, where
 * it has none, what unset means in the description). The README's
 * configuration table is generated from this schema (`npm run docs:config`).
 */
export const EnvSchema = z.object({
  GANTRY_HOST: z.string().min(1).default('127.0.0.1').describe('listen address of the API'),
  GANTRY_PORT: int(0, 65535).default(8420).describe('listen port of the API (0: any free port)'),
  GANTRY_DATA_DIR: z
    .string()
    .min(1)
    .default('./data')
    .describe(
      "Gantry's own directory (created with mode 0700), relative to the working directory: the SQLite store (jobs and logs) and this node's name (`node-id`); a fleet node on PostgreSQL needs it too, on storage that outlives its container",
    ),
  GANTRY_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional()
    .describe(
      'PostgreSQL shared by a fleet of nodes (`postgres://user:password@host:5432/db`), holding jobs, queue, logs and the node registry; unset: the embedded SQLite store under `GANTRY_DATA_DIR`',
    ),
  GANTRY_NODE_NAME: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/, 'letters, digits, "_", "." and "-", at most 253 characters')
    .optional()
    .describe(
      "this node's name in the fleet, unique per host; unset: the name kept in `GANTRY_DATA_DIR`'s `node-id`, written at the first start with the hostname of that start",
    ),
  GANTRY_NODE_LABELS: keyValues
    .default({})
    .describe("this node's labels, `KEY=VALUE,…`, which a job's `placement.nodeLabels` can require (e.g. `zone=a,nvlink=true`)"),
  GANTRY_NODE_LEASE_SECONDS: int(2, 3600)
    .default(30)
    .describe(
      'a node that has not renewed its lease for this many seconds (renewed every third of it) is declared lost: its unfinished jobs fail, or run again elsewhere when their spec asks',
    ),
  // Who decides where queued jobs run in a fleet (docs/fleet.md, One decider); a single host on SQLite always decides alone.
  GANTRY_FLEET_DECIDER: z
    .enum(['every-node', 'elected'])
    .default('elected')
    .describe(
      "in a fleet: `elected` (one node, elected through PostgreSQL, decides for the fleet and the others apply its assignments: quotas and preemptions hold fleet-wide) or `every-node` (each node runs the scheduling pass and claims for itself: no wait for a new decider when one dies, but limits may be overshot by the change feed's delay); every node of a fleet must use the same",
    ),
  GANTRY_FLEET_RELAY: z
    .enum(['on', 'off'])
    .default('on')
    .describe(
      "in a fleet under the elected decider: `on` (the decider relays the store's change feed to the other nodes over its API, so PostgreSQL wakes one listener per change instead of every node; a node that cannot reach the relay listens itself) or `off` (every node listens to PostgreSQL)",
    ),
  GANTRY_NODE_URL: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe(
      "where the other nodes of the fleet reach this node's API (the change relay); unset: `http(s)://` the listen address and port, or this host's name when the API listens on every address",
    ),
  GANTRY_TLS_CERT: z
    .string()
    .min(1)
    .optional()
    .describe('PEM certificate (chain) of the API: with `GANTRY_TLS_KEY`, the API speaks HTTPS only; re-read on SIGHUP'),
  GANTRY_TLS_KEY: z.string().min(1).optional().describe('PEM private key of `GANTRY_TLS_CERT`; re-read on SIGHUP'),
  GANTRY_TLS_CLIENT_CA: z
    .string()
    .min(1)
    .optional()
    .describe('PEM CA bundle: with it, only clients presenting a certificate it signed may connect (mutual TLS); re-read on SIGHUP'),
  GANTRY_DOCKER_SOCKET: z.string().min(1).default('/var/run/docker.sock').describe('Unix socket of the Docker engine Gantry drives'),
  GANTRY_ADMIN_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe(
      'an admin token to accept (≥ 16 characters); with neither this nor `GANTRY_TOKENS_FILE`, one is generated on first start and shown once',
    ),
  GANTRY_TOKENS_FILE: z
    .string()
    .min(1)
    .optional()
    .describe('path of a JSON array of `{owner, scopes, sha256}` (`npm run token` prints an entry); re-read on SIGHUP'),
  GANTRY_QUOTAS_FILE: z
    .string()
    .min(1)
    .optional()
    .describe(
      'path of a JSON array of teams, `{name, owners, maxQueued, maxRunning, gpus, borrowGpus}`, limits counted fleet-wide (README, Quotas); re-read on SIGHUP; unset: no limits',
    ),
  GANTRY_IMAGE_ALLOWLIST: csv
    .default(['local/*'])
    .describe(
      'comma-separated globs of the images jobs may run, e.g. `local/*,registry.example.com/ml/*` (`*` stops at `/`; use `**` for deeper)',
    ),
  GANTRY_MOUNT_ALLOWLIST: csv.default([]).describe('comma-separated absolute host path prefixes and named volumes jobs may mount'),
  GANTRY_NETWORKS: csv
    .default(['none'])
    .describe('comma-separated networks a job may join (`host`, `bridge`, `container:*` are always refused)'),
  GANTRY_DEFAULT_USER: z
    .string()
    .regex(/^[0-9]+:[0-9]+$/, 'must be a numeric "uid:gid"')
    .default('65532:65532')
    .describe(
      'the numeric `uid:gid` a job runs as when its spec names no `user` (not 0 unless `GANTRY_ALLOW_ROOT_OWNERS` is `*`); best a uid no person on the host has',
    ),
  GANTRY_ALLOW_ROOT_OWNERS: csv
    .default([])
    .describe(
      'comma-separated token owners whose jobs may run as uid or gid 0 or as a user name (`*`: every owner); others must give a non-zero numeric `uid:gid`',
    ),
  GANTRY_READONLY_ROOTFS: bool
    .default(false)
    .describe("`true`: every job's root filesystem is read-only, with a writable tmpfs on `/tmp` (mounts stay as the spec asks)"),
  GANTRY_SECRETS_DIR: z
    .string()
    .min(1)
    .optional()
    .describe(
      'directory of secrets jobs may use by name: one file per secret, and `.owners.json` mapping each name to the owners allowed it (see docs/security.md); unset: jobs can use no secrets',
    ),
  GANTRY_SECRETS_RUN_DIR: z
    .string()
    .min(1)
    .default('/run/gantry/secrets')
    .describe(
      "where a job's file secrets are written (on a tmpfs) for the moment between creating and starting its container; a host path the Docker engine sees. Gantry makes it and the folders it lacks its own, mode 0700, at start, and refuses to start if one is a link or another user's; never a world-writable place such as /dev/shm",
    ),
  GANTRY_NOTICE_DIR: z
    .string()
    .min(1)
    .default('/run/gantry/notices')
    .describe(
      "where a preemptible job's notice folder is kept while it runs (mounted read-only at /run/gantry in its container); a host path the Docker engine sees, made Gantry's own (0700) at start like `GANTRY_SECRETS_RUN_DIR`",
    ),
  // Result files (spec.resultFile): a job's JSON document becomes its `result` (runner/result-file.ts).
  GANTRY_RESULT_DIR: z
    .string()
    .min(1)
    .optional()
    .describe(
      "where a job's result folder is kept while it runs (mounted writable at /run/gantry-result in its container; this directory itself is made 0700); a host path the Docker engine sees; default `GANTRY_DATA_DIR`/results",
    ),
  GANTRY_RESULT_MAX_BYTES: int(2, 64 * 1024 * 1024)
    .default(1024 * 1024)
    .describe("the largest result file (bytes) Gantry takes as a job's `result`; a larger one is refused, with a line in the job's log"),
  GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS: int(0)
    .default(86400)
    .describe(
      'fair share: within a priority, owners (teams) whose recent GPU use, decayed with this half-life, is lowest against their share go first; 0: plain FIFO',
    ),
  GANTRY_MAX_RUNNING: int(1, 1024).default(16).describe('jobs running at once (1–1024); more wait in the queue'),
  GANTRY_DEFAULT_MEMORY_MIB: int(4).default(2048).describe('memory limit (MiB) of a job that gives none'),
  GANTRY_MAX_MEMORY_MIB: int(4).default(262144).describe('the most memory (MiB) a job may ask for'),
  GANTRY_MAX_CPUS: z.coerce.number().positive().default(64).describe('the most CPUs a job may ask for (fractions allowed)'),
  GANTRY_MAX_SHM_MIB: int(1).default(65536).describe('the largest `/dev/shm` (MiB) a job may ask for'),
  GANTRY_PIDS_LIMIT: int(16).default(4096).describe('pids limit of every container (≥ 16)'),
  GANTRY_DEFAULT_TIMEOUT_SECONDS: int(1)
    .default(86400)
    .describe('timeout (seconds) of a job that gives none; past it the job ends `timed_out`'),
  GANTRY_MAX_TIMEOUT_SECONDS: int(1)
    .default(7 * 86400)
    .describe('the longest timeout (seconds) a job may ask for'),
  GANTRY_STOP_GRACE_SECONDS: int(0, 3600).default(10).describe('seconds from SIGTERM to SIGKILL on cancel and timeout (0–3600)'),
  // A job's own stop grace (spec.stopGraceSeconds) is bounded so a fleet's fencing still holds (docs/fleet.md).
  GANTRY_MAX_STOP_GRACE_SECONDS: int(0, 3600)
    .optional()
    .describe('the longest stop grace (seconds) a job may ask for in `stopGraceSeconds` (default: GANTRY_STOP_GRACE_SECONDS)'),
  GANTRY_CAPABILITIES: csv.default([]).describe('comma-separated capabilities added back to every container (all others are dropped)'),
  GANTRY_PULL_POLICY: z.enum(['missing', 'always', 'never']).default('missing').describe('pull policy of a job that gives none'),
  GANTRY_ALLOWED_PULL_POLICIES: csv
    .pipe(z.array(z.enum(['missing', 'always', 'never'])))
    .default(['missing', 'always', 'never'])
    .describe('comma-separated pull policies a job may choose'),
  GANTRY_REGISTRY_AUTH_FILE: z
    .string()
    .min(1)
    .optional()
    .describe('path of a JSON file `{"registry.host:port": {"username", "password"}}`; used for pulls, never exposed to jobs'),
  GANTRY_LOG_DRIVER: z
    .enum(['json-file', 'local'])
    .default('local')
    .describe('Docker log driver of job containers (`local` or `json-file`); Gantry resumes capture from it after a restart'),
  GANTRY_LOG_MAX_BYTES: int(1024)
    .default(512 * 1024 * 1024)
    .describe(
      "per-attempt log cap (bytes); past it a truncation marker is stored and output discarded. Docker's own log file of a job is sized 4 × this + 16 MiB (the driver's per-line overhead), so a restarted Gantry can always resume capture from it",
    ),
  GANTRY_LOG_RETENTION_DAYS: int(0).default(30).describe('delete the logs of jobs that ended more than this many days ago (0: keep)'),
  // Hardening: the audit trail's retention, apart from the logs'.
  GANTRY_AUDIT_RETENTION_DAYS: int(0)
    .default(30)
    .describe(
      "delete audit records written more than this many days ago (0: keep), by the store's clock (PostgreSQL's in a fleet); give every node of a fleet the same value",
    ),
  // A store that stays as cheap as it grows: how long finished jobs' records
  // stay (their GPU time is kept for usage either way), and the PostgreSQL
  // connections one node holds (docs/fleet.md, Connections).
  GANTRY_JOB_RETENTION_DAYS: int(0)
    .default(0)
    .describe(
      "delete the records of jobs that ended more than this many days ago, their GPU time kept for `/v1/usage` (0: keep); never younger than fair share's horizon (ten half-lives)",
    ),
  GANTRY_PG_POOL_MAX: int(2, 100)
    .default(10)
    .describe(
      "most pooled PostgreSQL connections one node holds (two stay open; idle ones beyond them close after 30 s); the change feed's and the lease's own connections come on top",
    ),
  GANTRY_PG_SESSION_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional()
    .describe(
      "where the connections that need a session of their own go (the change feed's LISTEN, the migrator's advisory lock, the lease's renewals), past a pooler in transaction mode: PostgreSQL itself or a session-mode pool; unset: `GANTRY_DATABASE_URL`",
    ),
  GANTRY_KEEP_CONTAINERS: bool
    .default(false)
    .describe('keep finished containers (`true`/`false`, `1`/`0`, `yes`/`no`); their logs are stored either way'),
  GANTRY_SSE_HEARTBEAT_SECONDS: int(1, 15).default(15).describe('interval (seconds, 1–15) of the SSE heartbeat comment'),
  GANTRY_SSE_STALL_SECONDS: int(1).default(30).describe('a log client that reads nothing for this many seconds is dropped (it can resume)'),
  GANTRY_GPUS: z
    .string()
    .optional()
    .describe('GPU inventory: `nvidia-smi`, `none`, or `UUID:MEMORY_MIB,…`; unset: `nvidia-smi` if it is on the PATH, else `none`'),
  GANTRY_GPU_DRIVER: z
    .enum(['nvidia', 'cdi', 'devices', 'env'])
    .default('nvidia')
    .describe('how GPUs are injected: `nvidia`, `cdi`, `devices`, `env` (see docs/gpu.md)'),
  GANTRY_GPU_DRIVER_MOUNTS: csv.default([]).describe('`devices` driver: comma-separated read-only driver mounts, `src[:dst]`'),
  GANTRY_GPU_DRIVER_ENV: keyValues
    .default({})
    .describe('`devices` driver: variables it sets in containers, `KEY=VALUE,…` (e.g. `LD_LIBRARY_PATH=/usr/local/nvidia/lib64`)'),
  GANTRY_GPU_CAPABILITIES: z.string().min(1).default('compute,utility').describe('`NVIDIA_DRIVER_CAPABILITIES` of every job'),
  GANTRY_DCGM_JOB_MAPPING_DIR: z
    .string()
    .min(1)
    .optional()
    .describe(
      "directory of dcgm-exporter's HPC job mapping (its `DCGM_HPC_JOB_MAPPING_DIR`): one file per held GPU, named by its index, listing the jobs holding it (docs/gpu.md); unset: not written",
    ),
  GANTRY_GPU_MODEL_WEIGHTS: modelWeights
    .default([])
    .describe(
      '`/v1/usage` weights of GPU models, `MODEL=WEIGHT,…` (e.g. `H200=2,A100=1`): a card counts with the first whose MODEL is part of its name, case-insensitively; any other card weighs 1',
    ),
  GANTRY_GPU_SAMPLE_SECONDS: z.coerce
    .number()
    .min(0)
    .max(3600)
    .default(10)
    .describe(
      "interval (seconds) of the per-job GPU telemetry: utilisation, memory and power of running jobs' cards, two `nvidia-smi` runs per sample; 0: off",
    ),
  GANTRY_GPU_IDLE_MINUTES: z.coerce
    .number()
    .min(0)
    .default(0)
    .describe('a job whose cards stay at ≤5% utilisation this long gets an `idle` warning (needs telemetry); 0: never'),
  GANTRY_GPU_IDLE_ACTION: z
    .enum(['warn', 'end'])
    .default('warn')
    .describe('what an `idle` warning does: `warn` only, or `end` the job (attempt cause `idle`)'),
  GANTRY_GPU_MEMORY_EXCEEDED_ACTION: z
    .enum(['warn', 'end'])
    .default('warn')
    .describe('what a sharing job seen using more card memory than it declared gets: `warn`, or `end` (attempt cause `memory_exceeded`)'),
  GANTRY_GPU_HEALTH_INTERVAL_SECONDS: int(0, 3600)
    .default(30)
    .describe(
      "how often (seconds) the GPUs' health is checked: nvidia-smi's ECC and row-remapper state, and the Xids in the kernel log (docs/gpu.md, Health); 0: not checked",
    ),
  GANTRY_GPU_KERNEL_LOG: z
    .string()
    .min(1)
    .default('/dev/kmsg')
    .describe(
      "where the GPU health check reads the driver's Xid reports: the kernel log device (reading it needs root or `kernel.dmesg_restrict=0`); `none`: Xids are not watched",
    ),
  GANTRY_GPU_APP_XIDS: csv
    .pipe(z.array(z.string().regex(/^\d{1,5}$/, 'must be Xid numbers, comma-separated')).transform((l) => l.map(Number)))
    .default([13, 31, 43, 45, 68, 109])
    .describe(
      "Xids that are the program's fault, not the card's (NVIDIA's device plugin's list by default): the job fails by its own error and the card stays in service; every other Xid takes the card out of service",
    ),
  GANTRY_METRICS: z
    .enum(['off', 'token', 'open'])
    .default('token')
    .describe('`/metrics`: `token` (bearer with `metrics` or `admin` scope), `open` (no token, on `GANTRY_METRICS_PORT`), `off`'),
  GANTRY_METRICS_PORT: int(0, 65535).default(8421).describe('port of the open metrics listener (0: any free port)'),
  GANTRY_POLL_MIN_INTERVAL_MS: int(0)
    .default(200)
    .describe(
      'polls of `/v1/jobs/{id}/wait` for the same job closer together than this (milliseconds) are answered after it (paced, never refused); refused polls (401/403) of the same URL from the same address are paced the same way',
    ),
  GANTRY_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe("level of Gantry's own log (JSON lines on stdout; `info`: one line per request)"),
});

/** The environment, checked across fields, shaped into the nested config the app uses. */
export const ConfigSchema = EnvSchema.superRefine((e, ctx) => {
  const fail = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  if (e.GANTRY_DEFAULT_MEMORY_MIB > e.GANTRY_MAX_MEMORY_MIB) {
    fail('GANTRY_DEFAULT_MEMORY_MIB', 'must not exceed GANTRY_MAX_MEMORY_MIB');
  }
  if (e.GANTRY_DEFAULT_TIMEOUT_SECONDS > e.GANTRY_MAX_TIMEOUT_SECONDS) {
    fail('GANTRY_DEFAULT_TIMEOUT_SECONDS', 'must not exceed GANTRY_MAX_TIMEOUT_SECONDS');
  }
  if (!e.GANTRY_ALLOWED_PULL_POLICIES.includes(e.GANTRY_PULL_POLICY)) {
    fail('GANTRY_PULL_POLICY', 'must be one of GANTRY_ALLOWED_PULL_POLICIES');
  }
  if (e.GANTRY_METRICS === 'open' && e.GANTRY_METRICS_PORT !== 0 && e.GANTRY_METRICS_PORT === e.GANTRY_PORT) {
    fail('GANTRY_METRICS_PORT', 'must differ from GANTRY_PORT: open metrics are served on a port of their own');
  }
  if ((e.GANTRY_TLS_CERT === undefined) !== (e.GANTRY_TLS_KEY === undefined)) {
    fail(e.GANTRY_TLS_CERT === undefined ? 'GANTRY_TLS_CERT' : 'GANTRY_TLS_KEY', 'GANTRY_TLS_CERT and GANTRY_TLS_KEY go together');
  }
  if (e.GANTRY_TLS_CLIENT_CA !== undefined && e.GANTRY_TLS_CERT === undefined) {
    fail('GANTRY_TLS_CLIENT_CA', 'needs GANTRY_TLS_CERT and GANTRY_TLS_KEY: client certificates are asked for over TLS only');
  }
  if (e.GANTRY_DEFAULT_USER.split(':').some((id) => Number(id) === 0) && !e.GANTRY_ALLOW_ROOT_OWNERS.includes('*')) {
    fail('GANTRY_DEFAULT_USER', 'uid or gid 0 needs GANTRY_ALLOW_ROOT_OWNERS=*: it would run every job as root');
  }
  for (const m of e.GANTRY_MOUNT_ALLOWLIST) {
    if (m.includes('/') && !path.isAbsolute(m)) fail('GANTRY_MOUNT_ALLOWLIST', `"${m}" is neither an absolute path nor a volume name`);
  }
}).transform((e) => ({
  host: e.GANTRY_HOST,
  port: e.GANTRY_PORT,
  dataDir: path.resolve(e.GANTRY_DATA_DIR),
  databaseUrl: e.GANTRY_DATABASE_URL,
  postgres: { poolMax: e.GANTRY_PG_POOL_MAX, sessionUrl: e.GANTRY_PG_SESSION_URL },
  node: {
    /**
     * GANTRY_NODE_NAME; where it is unset, the hostname, which buildApp
     * replaces with the name kept in the data dir (fleet/node-identity.ts).
     */
    name: e.GANTRY_NODE_NAME ?? os.hostname(),
    /** Whether GANTRY_NODE_NAME gave the name: then no name is kept in the data dir. */
    nameFromEnv: e.GANTRY_NODE_NAME !== undefined,
    labels: e.GANTRY_NODE_LABELS,
    leaseSeconds: e.GANTRY_NODE_LEASE_SECONDS,
    /** Who decides for the fleet (GANTRY_FLEET_DECIDER); only a node on PostgreSQL acts on `elected`. */
    decider: e.GANTRY_FLEET_DECIDER,
    /** Whether the decider relays the change feed (GANTRY_FLEET_RELAY). */
    relay: e.GANTRY_FLEET_RELAY === 'on',
    /** Where the other nodes reach this node's API (GANTRY_NODE_URL); null: where it listens. */
    url: e.GANTRY_NODE_URL ?? null,
  },
  dockerSocket: e.GANTRY_DOCKER_SOCKET,
  tls:
    e.GANTRY_TLS_CERT !== undefined && e.GANTRY_TLS_KEY !== undefined
      ? { certFile: e.GANTRY_TLS_CERT, keyFile: e.GANTRY_TLS_KEY, clientCaFile: e.GANTRY_TLS_CLIENT_CA ?? null }
      : null,
  adminToken: e.GANTRY_ADMIN_TOKEN,
  tokensFile: e.GANTRY_TOKENS_FILE,
  quotasFile: e.GANTRY_QUOTAS_FILE,
  logLevel: e.GANTRY_LOG_LEVEL,
  policy: {
    imageAllowlist: e.GANTRY_IMAGE_ALLOWLIST,
    mountAllowlist: e.GANTRY_MOUNT_ALLOWLIST,
    networks: e.GANTRY_NETWORKS,
    defaultMemoryMiB: e.GANTRY_DEFAULT_MEMORY_MIB,
    maxMemoryMiB: e.GANTRY_MAX_MEMORY_MIB,
    maxCpus: e.GANTRY_MAX_CPUS,
    maxShmMiB: e.GANTRY_MAX_SHM_MIB,
    pidsLimit: e.GANTRY_PIDS_LIMIT,
    defaultTimeoutSeconds: e.GANTRY_DEFAULT_TIMEOUT_SECONDS,
    maxTimeoutSeconds: e.GANTRY_MAX_TIMEOUT_SECONDS,
    maxStopGraceSeconds: e.GANTRY_MAX_STOP_GRACE_SECONDS ?? e.GANTRY_STOP_GRACE_SECONDS,
    capabilities: e.GANTRY_CAPABILITIES,
    pullPolicy: e.GANTRY_PULL_POLICY,
    allowedPullPolicies: e.GANTRY_ALLOWED_PULL_POLICIES,
    defaultUser: e.GANTRY_DEFAULT_USER,
    allowRootOwners: e.GANTRY_ALLOW_ROOT_OWNERS,
    readonlyRootfs: e.GANTRY_READONLY_ROOTFS,
    ownPaths: ownPaths(e),
    /** The uid Gantry runs as: a job run as it would reach Gantry's own 0700/0600 files. */
    ownUid: process.getuid?.() ?? null,
  },
  secrets: {
    dir: e.GANTRY_SECRETS_DIR === undefined ? null : path.resolve(e.GANTRY_SECRETS_DIR),
    runDir: path.resolve(e.GANTRY_SECRETS_RUN_DIR),
  },
  noticeDir: path.resolve(e.GANTRY_NOTICE_DIR),
  results: {
    resultDir: path.resolve(e.GANTRY_RESULT_DIR ?? path.join(e.GANTRY_DATA_DIR, 'results')),
    maxBytes: e.GANTRY_RESULT_MAX_BYTES,
  },
  fairShareHalfLifeSeconds: e.GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS,
  maxRunning: e.GANTRY_MAX_RUNNING,
  stopGraceSeconds: e.GANTRY_STOP_GRACE_SECONDS,
  registryAuthFile: e.GANTRY_REGISTRY_AUTH_FILE,
  logs: {
    driver: e.GANTRY_LOG_DRIVER,
    maxBytesPerJob: e.GANTRY_LOG_MAX_BYTES,
    retentionDays: e.GANTRY_LOG_RETENTION_DAYS,
    jobRetentionDays: e.GANTRY_JOB_RETENTION_DAYS,
    auditRetentionDays: e.GANTRY_AUDIT_RETENTION_DAYS,
    keepContainers: e.GANTRY_KEEP_CONTAINERS,
    heartbeatSeconds: e.GANTRY_SSE_HEARTBEAT_SECONDS,
    stallSeconds: e.GANTRY_SSE_STALL_SECONDS,
  },
  gpus: {
    source: e.GANTRY_GPUS,
    driver: e.GANTRY_GPU_DRIVER,
    driverMounts: e.GANTRY_GPU_DRIVER_MOUNTS,
    driverEnv: e.GANTRY_GPU_DRIVER_ENV,
    capabilities: e.GANTRY_GPU_CAPABILITIES,
    dcgmJobMappingDir: e.GANTRY_DCGM_JOB_MAPPING_DIR === undefined ? null : path.resolve(e.GANTRY_DCGM_JOB_MAPPING_DIR),
    modelWeights: e.GANTRY_GPU_MODEL_WEIGHTS,
    telemetry: {
      sampleSeconds: e.GANTRY_GPU_SAMPLE_SECONDS,
      idleMinutes: e.GANTRY_GPU_IDLE_MINUTES,
      idleAction: e.GANTRY_GPU_IDLE_ACTION,
      memoryExceededAction: e.GANTRY_GPU_MEMORY_EXCEEDED_ACTION,
    },
    health: {
      intervalSeconds: e.GANTRY_GPU_HEALTH_INTERVAL_SECONDS,
      kernelLog: e.GANTRY_GPU_KERNEL_LOG === 'none' ? null : e.GANTRY_GPU_KERNEL_LOG,
      appXids: e.GANTRY_GPU_APP_XIDS,
    },
  },
  metrics: e.GANTRY_METRICS,
  metricsPort: e.GANTRY_METRICS_PORT,
  pollMinIntervalMs: e.GANTRY_POLL_MIN_INTERVAL_MS,
}));

export type Config = z.output<typeof ConfigSchema>;

/**
 * Gantry's own files and folders, by the variable that names them: the
 * policy never lets a job mount one of them, a folder inside one or a folder
 * holding one (jobs/policy.ts), and an allowlist entry inside one is a
 * configuration error. The Docker socket is checked apart.
 */
export interface OwnPath {
  variable: string;
  path: string;
}

function ownPaths(e: z.output<typeof EnvSchema>): OwnPath[] {
  const named: [string, string | undefined][] = [
    ['GANTRY_DATA_DIR', e.GANTRY_DATA_DIR],
    ['GANTRY_SECRETS_DIR', e.GANTRY_SECRETS_DIR],
    ['GANTRY_SECRETS_RUN_DIR', e.GANTRY_SECRETS_RUN_DIR],
    ['GANTRY_NOTICE_DIR', e.GANTRY_NOTICE_DIR],
    ['GANTRY_REGISTRY_AUTH_FILE', e.GANTRY_REGISTRY_AUTH_FILE],
    ['GANTRY_TLS_CERT', e.GANTRY_TLS_CERT],
    ['GANTRY_TLS_KEY', e.GANTRY_TLS_KEY],
    ['GANTRY_TLS_CLIENT_CA', e.GANTRY_TLS_CLIENT_CA],
    ['GANTRY_TOKENS_FILE', e.GANTRY_TOKENS_FILE],
    ['GANTRY_QUOTAS_FILE', e.GANTRY_QUOTAS_FILE],
    ['GANTRY_DCGM_JOB_MAPPING_DIR', e.GANTRY_DCGM_JOB_MAPPING_DIR],
  ];
  return named.flatMap(([variable, p]) => (p === undefined ? [] : [{ variable, path: path.resolve(p) }]));
}

/** The same path with symlinks resolved where it exists (an allowlist entry or a folder Gantry has yet to make may not). */
export function realOrResolved(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export const isWithin = (p: string, prefix: string) => p === prefix || p.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);

/** An allowlist entry inside one of Gantry's own paths, or a default user that is Gantry's own uid. */
function ownPathProblems(c: Config): string[] {
  const problems: string[] = [];
  for (const entry of c.policy.mountAllowlist.filter((m) => m.startsWith('/'))) {
    const real = realOrResolved(entry);
    const own = c.policy.ownPaths.find((o) => isWithin(real, realOrResolved(o.path)));
    if (own)
      problems.push(`GANTRY_MOUNT_ALLOWLIST: "${entry}" is within ${own.variable} ("${own.path}"), Gantry's own: no job may mount it`);
  }
  const [uid] = c.policy.defaultUser.split(':');
  if (c.policy.ownUid !== null && c.policy.ownUid !== 0 && Number(uid) === c.policy.ownUid) {
    problems.push(`GANTRY_DEFAULT_USER: uid ${uid} is the uid Gantry runs as: every job would reach Gantry's own files`);
  }
  return problems;
}
export type PolicyConfig = Config['policy'];
export type TlsConfig = NonNullable<Config['tls']>;

/**
 * A configuration value the operator must fix. Each problem is one line that
 * starts with the variable's name; main.ts prints it as
 * `gantry: invalid configuration: GANTRY_X: what is wrong` and exits 2.
 */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(variable: string, message: string);
  constructor(problems: readonly string[]);
  constructor(first: string | readonly string[], message?: string) {
    // A value quoted in a problem may hold a newline; the output stays one line per problem.
    const problems = (typeof first === 'string' ? [`${first}: ${message}`] : first).map((p) => p.replace(/\s*[\r\n]+\s*/g, ' '));
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Reads the GANTRY_* variables; throws ConfigError with one problem per bad value. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "unset", as in most shells' `VAR= cmd` idiom.
  const gantryEnv = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('GANTRY_') && v !== undefined && v !== ''));
  const parsed = ConfigSchema.safeParse(gantryEnv);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const problems = ownPathProblems(parsed.data);
  if (problems.length > 0) throw new ConfigError(problems);
  return parsed.data;
}
