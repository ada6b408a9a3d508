import fs from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { type PolicyConfig, realOrResolved, isWithin as within } from '../config.js';
import type { SpecFieldError } from '../model/errors.js';
import { normalizeImage } from '../model/image-ref.js';
import { GANTRY_CONTAINER_DIR, type JobSpec, RESERVED_LABEL_PREFIX } from '../model/job.js';
import type { SecretSource } from '../secrets/source.js';

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

const mayRunAsRoot = (owner: string, policy: PolicyConfig) =>
  policy.allowRootOwners.includes('*') || policy.allowRootOwners.includes(owner);

/**
 * Who a job may run as. Without the operator's leave (GANTRY_ALLOW_ROOT_OWNERS)
 * only a numeric, non-zero uid and gid: a user name is resolved inside the
 * image, which may map it to 0, and a uid alone gets gid 0 when the image
 * does not list it. A root process writing to a writable mount can leave a
 * setuid-root file on the host, which no capability drop prevents.
 */
function checkUser(user: string, owner: string, policy: PolicyConfig): string | null {
  if (mayRunAsRoot(owner, policy)) return null;
  const allow = `GANTRY_ALLOW_ROOT_OWNERS lets an owner's jobs run as root or by name`;
  const m = /^([0-9]+)(?::([0-9]+))?$/.exec(user);
  if (!m) return `user names are refused, as the image could map them to uid 0: give a numeric "uid:gid" (${allow})`;
  if (m[2] === undefined) return `give the group too ("${user}:GID"): without one the job could run with gid 0 (${allow})`;
  if (Number(m[1]) === 0 || Number(m[2]) === 0) return `uid and gid 0 (root) are refused (${allow})`;
  if (Number(m[1]) === policy.ownUid) return `uid ${m[1]} is the uid Gantry runs as, which owns Gantry's own files: pick another`;
  return null;
}

/**
 * Why a mount or secret file may not go at `target` given those placed
 * before it, or null. In or over Gantry's own folder, Gantry's mount would
 * fail at start (or, over a writable bind, the engine would make its mount
 * point on the host); one inside another likewise has the engine make its
 * mount point inside the other mount, on the host for a bind mount.
 */
function targetRefusal(target: string, placed: ReadonlySet<string>): string | null {
  if (within(target, GANTRY_CONTAINER_DIR) || within(GANTRY_CONTAINER_DIR, target)) {
    return `"${target}" would cover or fall within "${GANTRY_CONTAINER_DIR}", where Gantry mounts its own folder`;
  }
  if (placed.has(target)) return `"${target}" is mounted twice`;
  const other = [...placed].find((t) => within(target, t) || within(t, target));
  return other ? `"${target}" and "${other}" are nested: one would be made inside the other` : null;
}

/**
 * Decides whether a spec may run under the operator's policy. Bind sources are
 * resolved on the host (`..`, symlinks) before they are checked, and the
 * resolved path is what reaches Docker, so a symlink cannot point a job
 * outside the allowlist.
 */
export function checkPolicy(spec: JobSpec, owner: string, policy: PolicyConfig, dockerSocket: string): PolicyDecision {
  const errors: SpecFieldError[] = [];
  const fail = (path: string, message: string) => errors.push({ path, message });

  if (spec.user !== undefined) {
    const refused = checkUser(spec.user, owner, policy);
    if (refused) fail('user', refused);
  }

  if (!imageAllowed(spec.image, policy.imageAllowlist)) {
    fail('image', `image "${spec.image}" is not in GANTRY_IMAGE_ALLOWLIST`);
  }

  const network = spec.network ?? 'none';
  if (FORBIDDEN_NETWORKS.test(network) || !policy.networks.includes(network)) {
    const never = FORBIDDEN_NETWORKS.test(network) ? '; host, bridge and container:* never are' : '';
    fail('network', `network "${network}" is not in GANTRY_NETWORKS (${policy.networks.join(', ')})${never}`);
  }

  const reservedEnv = (key: string) =>
    key.toUpperCase().startsWith('NVIDIA_')
      ? 'NVIDIA_* variables are set by Gantry from the GPU allocation'
      : key.startsWith('GANTRY_')
        ? 'GANTRY_* variables are reserved'
        : null;
  for (const key of Object.keys(spec.env ?? {})) {
    const reserved = reservedEnv(key);
    if (reserved) fail(`env.${key}`, reserved);
  }
  for (const key of Object.keys(spec.privateEnv ?? {})) {
    const reserved = reservedEnv(key);
    if (reserved) fail(`privateEnv.${key}`, reserved);
    else if (spec.env?.[key] !== undefined) fail(`privateEnv.${key}`, `"${key}" is set twice`);
  }
  for (const key of Object.keys(spec.labels ?? {})) {
    if (key.startsWith(RESERVED_LABEL_PREFIX)) fail(`labels.${key}`, `label keys under "${RESERVED_LABEL_PREFIX}" are reserved`);
  }

  const r = spec.resources ?? {};
  if (r.memoryMiB !== undefined && r.memoryMiB > policy.maxMemoryMiB) {
    fail('resources.memoryMiB', `exceeds the maximum of ${policy.maxMemoryMiB} MiB (GANTRY_MAX_MEMORY_MIB)`);
  }
  if (r.cpus !== undefined && r.cpus > policy.maxCpus) fail('resources.cpus', `exceeds the maximum of ${policy.maxCpus} (GANTRY_MAX_CPUS)`);
  if (r.shmMiB !== undefined && r.shmMiB > policy.maxShmMiB) {
    fail('resources.shmMiB', `exceeds the maximum of ${policy.maxShmMiB} MiB (GANTRY_MAX_SHM_MIB)`);
  }
  if (spec.timeoutSeconds !== undefined && spec.timeoutSeconds > policy.maxTimeoutSeconds) {
    fail('timeoutSeconds', `exceeds the maximum of ${policy.maxTimeoutSeconds} s (GANTRY_MAX_TIMEOUT_SECONDS)`);
  }
  if (spec.stopGraceSeconds !== undefined && spec.stopGraceSeconds > policy.maxStopGraceSeconds) {
    fail('stopGraceSeconds', `exceeds the maximum of ${policy.maxStopGraceSeconds} s (GANTRY_MAX_STOP_GRACE_SECONDS)`);
  }
  if (spec.pullPolicy !== undefined && !policy.allowedPullPolicies.includes(spec.pullPolicy)) {
    fail('pullPolicy', `must be one of ${policy.allowedPullPolicies.join(', ')} (GANTRY_ALLOWED_PULL_POLICIES)`);
  }

  const socket = realOrResolved(dockerSocket);
  const ownPaths = policy.ownPaths.map((o) => ({ ...o, real: realOrResolved(o.path) }));
  const mounts: ResolvedMount[] = [];
  const targets = new Set<string>();
  (spec.mounts ?? []).forEach((m, i) => {
    const field = `mounts.${i}`;
    const target = path.posix.normalize(m.target);
    if (target === '/' || FORBIDDEN_TARGETS.some((t) => within(target, t))) {
      fail(`${field}.target`, `may not mount over "${target}"`);
      return;
    }
    const refused = targetRefusal(target, targets);
    if (refused) {
      fail(`${field}.target`, refused);
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
    const own = ownPaths.find((o) => within(resolved, o.real) || within(o.real, resolved));
    if (own) {
      fail(`${field}.source`, `host path "${resolved}" would expose Gantry's own ${own.variable} ("${own.path}")`);
      return;
    }
    const allowed = policy.mountAllowlist.filter((a) => a.startsWith('/')).some((a) => within(resolved, realOrResolved(a)));
    if (!allowed) {
      fail(`${field}.source`, `host path "${resolved}" is outside GANTRY_MOUNT_ALLOWLIST`);
      return;
    }
    mounts.push({ type: 'bind', source: resolved, target, readOnly: m.readOnly });
  });

  const envTaken = new Set([...Object.keys(spec.env ?? {}), ...Object.keys(spec.privateEnv ?? {})]);
  (spec.secrets ?? []).forEach((secret, i) => {
    if (secret.env !== undefined) {
      const reserved = reservedEnv(secret.env);
      if (reserved) fail(`secrets.${i}.env`, reserved);
      else if (envTaken.has(secret.env)) fail(`secrets.${i}.env`, `"${secret.env}" is set twice`);
      envTaken.add(secret.env);
    }
    if (secret.file !== undefined) {
      const target = path.posix.normalize(secret.file);
      if (target === '/' || FORBIDDEN_TARGETS.some((t) => within(target, t))) fail(`secrets.${i}.file`, `may not be placed at "${target}"`);
      else {
        const refused = targetRefusal(target, targets);
        if (refused) fail(`secrets.${i}.file`, refused);
      }
      targets.add(target);
    }
  });

  return { errors, mounts };
}

/**
 * The spec's secrets that its owner may not use. A secret that does not
 * exist is refused in the same words as one the owner is not allowed, so a
 * refusal does not tell which names exist.
 */
export async function secretAccessErrors(spec: JobSpec, owner: string, source: SecretSource): Promise<SpecFieldError[]> {
  const errors: SpecFieldError[] = [];
  const refs = spec.secrets ?? [];
  const allowed = await Promise.all(refs.map((s) => source.mayUse(owner, s.name)));
  refs.forEach((s, i) => {
    if (!allowed[i]) {
      errors.push({
        path: `secrets.${i}.name`,
        message: `owner "${owner}" may use no secret named "${s.name}" (GANTRY_SECRETS_DIR and its .owners.json)`,
      });
    }
  });
  return errors;
}
