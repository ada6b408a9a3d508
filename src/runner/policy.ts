import fs from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import type Docker from 'dockerode';
import type { Config, PolicyConfig } from '../config.js';
import type { FieldError } from '../api/problem.js';
import { RESERVED_LABEL_PREFIX, type JobSpec } from '../jobs/schema.js';
import type { GpuInjection } from '../gpu/inject.js';
import { driverLogMaxMiB } from '../logs/capture.js';

export const LABELS = {
  managed: 'dev.gantry.managed',
  jobId: 'dev.gantry.job-id',
  owner: 'dev.gantry.owner',
} as const;

/** Host paths a job may never mount, whatever the allowlist says. */
const FORBIDDEN_SOURCES = ['/proc', '/sys', '/dev', '/boot'];
/** Container paths a job may never mount over. */
const FORBIDDEN_TARGETS = ['/proc', '/sys', '/dev'];
const FORBIDDEN_NETWORKS = /^(host|container:.*|bridge)$/;

export interface ResolvedMount {
  type: 'bind' | 'volume';
  source: string;
  target: string;
  readOnly: boolean;
}

export interface PolicyDecision {
  errors: FieldError[];
  mounts: ResolvedMount[];
}

const within = (p: string, prefix: string) => p === prefix || p.startsWith(prefix.endsWith('/') ? prefix : prefix + '/');

/** Docker's reference normalisation, enough for matching: add `:latest` when there is no tag or digest. */
export function normalizeImage(image: string): string {
  if (image.includes('@')) return image;
  const lastSlash = image.lastIndexOf('/');
  return image.slice(lastSlash + 1).includes(':') ? image : `${image}:latest`;
}

export function imageAllowed(image: string, allowlist: readonly string[]): boolean {
  const ref = normalizeImage(image);
  return allowlist.some((pattern) => picomatch.isMatch(ref, pattern) || picomatch.isMatch(image, pattern));
}

function realpathOrNull(p: string): string | null {
  try {
    return fs.realpathSync(p);
  } catch {
    return null;
  }
}

/**
 * Decides whether a spec may run under the operator's policy. Bind sources are
 * resolved on the host (`..`, symlinks) before they are checked, and the
 * resolved path is what reaches Docker, so a symlink cannot point a job
 * outside the allowlist.
 */
export function checkPolicy(spec: JobSpec, policy: PolicyConfig, dockerSocket: string): PolicyDecision {
  const errors: FieldError[] = [];
  const fail = (field: string, message: string) => errors.push({ field: `body.${field}`, message });

  if (!imageAllowed(spec.image, policy.imageAllowlist)) {
    fail('image', `image "${spec.image}" is not in GANTRY_IMAGE_ALLOWLIST`);
  }

  const network = spec.network ?? 'none';
  if (FORBIDDEN_NETWORKS.test(network) || !policy.networks.includes(network)) {
    fail('network', `network "${network}" is not allowed (allowed: ${policy.networks.join(', ')})`);
  }

  for (const key of Object.keys(spec.env ?? {})) {
    if (key.toUpperCase().startsWith('NVIDIA_')) fail(`env.${key}`, 'NVIDIA_* variables are set by Gantry from the GPU allocation');
    if (key.startsWith('GANTRY_')) fail(`env.${key}`, 'GANTRY_* variables are reserved');
  }
  for (const key of Object.keys(spec.labels ?? {})) {
    if (key.startsWith(RESERVED_LABEL_PREFIX)) fail(`labels.${key}`, `label keys under "${RESERVED_LABEL_PREFIX}" are reserved`);
  }

  const r = spec.resources ?? {};
  if (r.memoryMiB !== undefined && r.memoryMiB > policy.maxMemoryMiB) {
    fail('resources.memoryMiB', `exceeds the maximum of ${policy.maxMemoryMiB} MiB`);
  }
  if (r.cpus !== undefined && r.cpus > policy.maxCpus) fail('resources.cpus', `exceeds the maximum of ${policy.maxCpus}`);
  if (r.shmMiB !== undefined && r.shmMiB > policy.maxShmMiB) fail('resources.shmMiB', `exceeds the maximum of ${policy.maxShmMiB} MiB`);
  if (spec.timeoutSeconds !== undefined && spec.timeoutSeconds > policy.maxTimeoutSeconds) {
    fail('timeoutSeconds', `exceeds the maximum of ${policy.maxTimeoutSeconds} s`);
  }
  if (spec.pullPolicy !== undefined && !policy.allowedPullPolicies.includes(spec.pullPolicy)) {
    fail('pullPolicy', `must be one of ${policy.allowedPullPolicies.join(', ')}`);
  }

  const socket = realpathOrNull(dockerSocket) ?? path.resolve(dockerSocket);
  const mounts: ResolvedMount[] = [];
  const targets = new Set<string>();
  (spec.mounts ?? []).forEach((m, i) => {
    const field = `mounts.${i}`;
    const target = path.posix.normalize(m.target);
    if (target === '/' || FORBIDDEN_TARGETS.some((t) => within(target, t))) {
      fail(`${field}.target`, `may not mount over "${target}"`);
      return;
    }
    if (targets.has(target)) {
      fail(`${field}.target`, `"${target}" is mounted twice`);
      return;
    }
    targets.add(target);

    if (!m.source.startsWith('/')) {
      if (m.source.includes('/') || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(m.source)) {
        fail(`${field}.source`, 'must be an absolute host path or a volume name');
      } else if (!policy.mountAllowlist.includes(m.source)) {
        fail(`${field}.source`, `volume "${m.source}" is not in GANTRY_MOUNT_ALLOWLIST`);
      } else {
        mounts.push({ type: 'volume', source: m.source, target, readOnly: m.readOnly });
      }
      return;
    }
    const resolved = realpathOrNull(m.source);
    if (resolved === null) {
      // Docker would create a missing bind source as an empty root-owned
      // directory; refuse instead.
      fail(`${field}.source`, `host path "${m.source}" does not exist`);
      return;
    }
    if (resolved === '/' || FORBIDDEN_SOURCES.some((f) => within(resolved, f))) {
      fail(`${field}.source`, `host path "${resolved}" may never be mounted`);
      return;
    }
    if (within(socket, resolved)) {
      fail(`${field}.source`, `host path "${resolved}" would expose the Docker socket`);
      return;
    }
    const allowed = policy.mountAllowlist
      .filter((a) => a.startsWith('/'))
      .some((a) => within(resolved, realpathOrNull(a) ?? path.resolve(a)));
    if (!allowed) {
      fail(`${field}.source`, `host path "${resolved}" is outside GANTRY_MOUNT_ALLOWLIST`);
      return;
    }
    mounts.push({ type: 'bind', source: resolved, target, readOnly: m.readOnly });
  });

  return { errors, mounts };
}

export interface ContainerPlan {
  jobId: string;
  owner: string;
  spec: JobSpec;
  mounts: ResolvedMount[];
  gpu: GpuInjection;
}

/**
 * The complete container definition. Every field is set by Gantry: nothing
 * of the client's JSON is passed through except the values checked above.
 */
export function buildContainerOptions(plan: ContainerPlan, cfg: Config): Docker.ContainerCreateOptions {
  const { spec, policy } = { spec: plan.spec, policy: cfg.policy };
  const memoryBytes = (spec.resources?.memoryMiB ?? policy.defaultMemoryMiB) * 1024 * 1024;
  const env = { ...(spec.env ?? {}), ...plan.gpu.env };
  const logMaxMiB = driverLogMaxMiB(cfg.logs.maxBytesPerJob);

  const hostConfig: Docker.HostConfig = {
    NetworkMode: spec.network ?? 'none',
    Privileged: false,
    CapDrop: ['ALL'],
    CapAdd: policy.capabilities,
    SecurityOpt: ['no-new-privileges:true'],
    PidsLimit: policy.pidsLimit,
    Memory: memoryBytes,
    MemorySwap: memoryBytes,
    NanoCpus: spec.resources?.cpus !== undefined ? Math.round(spec.resources.cpus * 1e9) : 0,
    ShmSize: (spec.resources?.shmMiB ?? 64) * 1024 * 1024,
    IpcMode: 'private',
    PidMode: '',
    UTSMode: '',
    UsernsMode: '',
    ReadonlyRootfs: false,
    // An init as PID 1 forwards SIGTERM, so cancel's grace period works for
    // images whose command does not handle signals itself.
    Init: true,
    AutoRemove: false,
    RestartPolicy: { Name: 'no' },
    LogConfig: {
      Type: cfg.logs.driver,
      // Big enough that Docker keeps a whole capped log (its per-line
      // overhead included), so a restarted Gantry can resume capture from
      // the driver without a gap.
      Config: { 'max-size': `${logMaxMiB}m`, 'max-file': '1', ...(cfg.logs.driver === 'local' ? { compress: 'false' } : {}) },
    },
    Mounts: [
      ...plan.mounts.map((m) => ({
        Type: m.type,
        Source: m.source,
        Target: m.target,
        ReadOnly: m.readOnly,
        ...(m.type === 'bind' ? { BindOptions: { Propagation: 'rprivate' as const } } : {}),
      })),
      ...(plan.gpu.hostConfig.Mounts ?? []),
    ],
    Devices: plan.gpu.hostConfig.Devices ?? [],
    DeviceRequests: plan.gpu.hostConfig.DeviceRequests ?? [],
  };

  return {
    name: `gantry-${plan.jobId}`,
    Image: spec.image,
    Cmd: spec.command,
    ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
    ...(spec.user ? { User: spec.user } : {}),
    Labels: {
      ...(spec.labels ?? {}),
      [LABELS.managed]: 'true',
      [LABELS.jobId]: plan.jobId,
      [LABELS.owner]: plan.owner,
    },
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    NetworkDisabled: (spec.network ?? 'none') === 'none',
    HostConfig: hostConfig,
  };
}
