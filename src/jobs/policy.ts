import fs from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import type { PolicyConfig } from '../config.js';
import type { SpecFieldError } from '../model/errors.js';
import { normalizeImage } from '../model/image-ref.js';
import { type JobSpec, RESERVED_LABEL_PREFIX } from '../model/job.js';

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
  /** Paths are relative to the spec (`mounts.0.source`). */
  errors: SpecFieldError[];
  mounts: ResolvedMount[];
}

const within = (p: string, prefix: string) => p === prefix || p.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);

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
  const errors: SpecFieldError[] = [];
  const fail = (path: string, message: string) => errors.push({ path, message });

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
