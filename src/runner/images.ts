import fs from 'node:fs';
import type Docker from 'dockerode';
import { z } from 'zod';
import { normalizeImage } from './policy.js';

export const RegistryAuthFileSchema = z.record(
  z.string().min(1),
  z.object({ username: z.string(), password: z.string() }).strict(),
);
export type RegistryAuth = z.infer<typeof RegistryAuthFileSchema>;

export function loadRegistryAuth(file: string | undefined): RegistryAuth {
  if (!file) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`GANTRY_REGISTRY_AUTH_FILE: cannot read ${file}: ${(err as Error).message}`);
  }
  const parsed = RegistryAuthFileSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`GANTRY_REGISTRY_AUTH_FILE: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}

/** The registry host of an image reference, as Docker decides it. */
export function registryOf(image: string): string {
  const first = image.split('/')[0]!;
  const hasHost = image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return hasHost ? first : 'docker.io';
}

export type PullPolicy = 'missing' | 'always' | 'never';

export class ImageError extends Error {}

interface ProgressEvent {
  status?: string;
  progress?: string;
  id?: string;
  error?: string;
  errorDetail?: { message?: string };
}

/**
 * Decides, under the pull policy, whether a job pulls its image, and pulls it. Credentials come
 * from the operator's registry auth file, never from the job.
 */
export class ImagePuller {
  constructor(
    private readonly docker: Docker,
    private readonly auth: RegistryAuth,
  ) {}

  private async present(image: string): Promise<boolean> {
    try {
      await this.docker.getImage(normalizeImage(image)).inspect();
      return true;
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 404) return false;
      // A reference that passed Gantry's grammar but not Docker's (an
      // upper-case digest, found by the fuzzer): the job's fault, not Gantry's.
      if (status === 400) throw new ImageError(`Docker refused the image reference "${image}": ${dockerMessage(err)}`);
      throw err;
    }
  }

  /**
   * Whether the job must pull its image before it can start. One image
   * inspect at most: under the concurrency bench dockerd is the bottleneck,
   * so every API call per job counts. Throws when the image is missing and
   * the policy forbids pulling it.
   */
  async needsPull(image: string, policy: PullPolicy): Promise<boolean> {
    if (policy === 'always') return true;
    if (await this.present(image)) return false;
    if (policy === 'never') throw new ImageError(`image "${image}" is not present on this host and the pull policy is "never"`);
    return true;
  }

  async pull(image: string, onProgress: (status: string, progress: string | null) => void): Promise<void> {
    const registry = registryOf(image);
    const creds = this.auth[registry];
    const opts = creds ? { authconfig: { username: creds.username, password: creds.password, serveraddress: registry } } : {};
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await this.docker.pull(normalizeImage(image), opts)) as NodeJS.ReadableStream;
    } catch (err) {
      throw new ImageError(`pulling "${image}" failed: ${dockerMessage(err)}`);
    }
    let lastReport = 0;
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(
        stream,
        (err: Error | null, events: ProgressEvent[]) => {
          if (err) return reject(new ImageError(`pulling "${image}" failed: ${err.message}`));
          // Registry errors arrive inside the stream, not as a transport error.
          const failed = events.find((e) => e.error || e.errorDetail);
          if (failed) return reject(new ImageError(`pulling "${image}" failed: ${failed.errorDetail?.message ?? failed.error}`));
          resolve();
        },
        (e: ProgressEvent) => {
          const now = Date.now();
          if (now - lastReport < 1000) return;
          lastReport = now;
          onProgress(e.id ? `${e.id}: ${e.status ?? ''}` : (e.status ?? 'pulling'), e.progress ?? null);
        },
      );
    });
  }
}

/** The daemon's own error text, without dockerode's HTTP wrapper noise. */
export function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; reason?: string; message?: string };
  return e?.json?.message ?? e?.message ?? String(err);
}
