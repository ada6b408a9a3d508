import path from 'node:path';
import { z } from 'zod';

/** Comma-separated list → trimmed, non-empty entries. */
const csv = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0));

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

/** `KEY=VALUE,KEY=VALUE` → record (used for operator-set GPU driver variables). */
const keyValues = z.string().transform((s, ctx) => {
  const out: Record<string, string> = {};
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) {
      ctx.addIssue({ code: 'custom', message: `expected KEY=VALUE, got "${part}"` });
      return z.NEVER;
    }
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
});

/**
 * Every environment variable Gantry reads. The README's configuration table
 * is written from this schema; keep them in step.
 */
export const EnvSchema = z.object({
  GANTRY_HOST: z.string().min(1).default('127.0.0.1'),
  GANTRY_PORT: int(0, 65535).default(8420),
  GANTRY_DATA_DIR: z.string().min(1).default('./data'),
  GANTRY_DOCKER_SOCKET: z.string().min(1).default('/var/run/docker.sock'),
  GANTRY_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  GANTRY_TOKENS_FILE: z.string().min(1).optional(),
  GANTRY_IMAGE_ALLOWLIST: csv.default(['local/*']),
  GANTRY_MOUNT_ALLOWLIST: csv.default([]),
  GANTRY_NETWORKS: csv.default(['none']),
  GANTRY_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  GANTRY_MAX_RUNNING: int(1, 1024).default(16),
  GANTRY_DEFAULT_MEMORY_MIB: int(4).default(2048),
  GANTRY_MAX_MEMORY_MIB: int(4).default(262144),
  GANTRY_MAX_CPUS: z.coerce.number().positive().default(64),
  GANTRY_MAX_SHM_MIB: int(1).default(65536),
  GANTRY_PIDS_LIMIT: int(16).default(4096),
  GANTRY_DEFAULT_TIMEOUT_SECONDS: int(1).default(86400),
  GANTRY_MAX_TIMEOUT_SECONDS: int(1).default(7 * 86400),
  GANTRY_STOP_GRACE_SECONDS: int(0, 3600).default(10),
  GANTRY_CAPABILITIES: csv.default([]),
  GANTRY_PULL_POLICY: z.enum(['missing', 'always', 'never']).default('missing'),
  GANTRY_ALLOWED_PULL_POLICIES: csv.pipe(z.array(z.enum(['missing', 'always', 'never']))).default(['missing', 'always', 'never']),
  GANTRY_REGISTRY_AUTH_FILE: z.string().min(1).optional(),
  GANTRY_LOG_DRIVER: z.enum(['json-file', 'local']).default('local'),
  GANTRY_LOG_MAX_BYTES: int(1024).default(512 * 1024 * 1024),
  GANTRY_LOG_RETENTION_DAYS: int(0).default(30),
  GANTRY_KEEP_CONTAINERS: bool.default(false),
  GANTRY_SSE_HEARTBEAT_SECONDS: int(1, 15).default(15),
  GANTRY_SSE_STALL_SECONDS: int(1).default(30),
  GANTRY_GPUS: z.string().optional(),
  GANTRY_GPU_DRIVER: z.enum(['nvidia', 'cdi', 'devices', 'env']).default('nvidia'),
  GANTRY_GPU_DRIVER_MOUNTS: csv.default([]),
  GANTRY_GPU_DRIVER_ENV: keyValues.default({}),
  GANTRY_GPU_CAPABILITIES: z.string().min(1).default('compute,utility'),
  GANTRY_METRICS: z.enum(['off', 'token', 'open']).default('token'),
  GANTRY_METRICS_PORT: int(0, 65535).default(8421),
  GANTRY_POLL_MIN_INTERVAL_MS: int(0).default(200),
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
  for (const m of e.GANTRY_MOUNT_ALLOWLIST) {
    if (m.includes('/') && !path.isAbsolute(m)) fail('GANTRY_MOUNT_ALLOWLIST', `"${m}" is neither an absolute path nor a volume name`);
  }
}).transform((e) => ({
  host: e.GANTRY_HOST,
  port: e.GANTRY_PORT,
  dataDir: path.resolve(e.GANTRY_DATA_DIR),
  dockerSocket: e.GANTRY_DOCKER_SOCKET,
  adminToken: e.GANTRY_ADMIN_TOKEN,
  tokensFile: e.GANTRY_TOKENS_FILE,
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
    capabilities: e.GANTRY_CAPABILITIES,
    pullPolicy: e.GANTRY_PULL_POLICY,
    allowedPullPolicies: e.GANTRY_ALLOWED_PULL_POLICIES,
  },
  maxRunning: e.GANTRY_MAX_RUNNING,
  stopGraceSeconds: e.GANTRY_STOP_GRACE_SECONDS,
  registryAuthFile: e.GANTRY_REGISTRY_AUTH_FILE,
  logs: {
    driver: e.GANTRY_LOG_DRIVER,
    maxBytesPerJob: e.GANTRY_LOG_MAX_BYTES,
    retentionDays: e.GANTRY_LOG_RETENTION_DAYS,
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
  },
  metrics: e.GANTRY_METRICS,
  metricsPort: e.GANTRY_METRICS_PORT,
  pollMinIntervalMs: e.GANTRY_POLL_MIN_INTERVAL_MS,
}));

export type Config = z.output<typeof ConfigSchema>;
export type PolicyConfig = Config['policy'];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Reads the GANTRY_* variables; throws ConfigError with one line per bad value. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "unset", as in most shells' `VAR= cmd` idiom.
  const gantryEnv = Object.fromEntries(
    Object.entries(env).filter(([k, v]) => k.startsWith('GANTRY_') && v !== undefined && v !== ''),
  );
  const parsed = ConfigSchema.safeParse(gantryEnv);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  return parsed.data;
}
