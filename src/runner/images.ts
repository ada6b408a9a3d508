import { registryOf } from '../model/image-ref.js';
import { type ContainerRuntime, RuntimeError } from '../runtime/runtime.js';

export type PullPolicy = 'missing' | 'always' | 'never';

/** Registry host (as in image references) → the operator's credentials for it. */
export type RegistryLogins = Readonly<Record<string, { username: string; password: string }>>;

/** The job's image cannot be had: a reason for the job, not an error of Gantry's. */
export class ImageError extends Error {}

/**
 * Decides, under the pull policy, whether a job pulls its image, and pulls
 * it. Credentials come from the operator's registry auth file, never from
 * the job.
 */
export class ImagePuller {
  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly logins: RegistryLogins,
  ) {}

  /**
   * Whether the job must pull its image before it can start: one image
   * inspect at most (every engine call per job counts when the engine is
   * the bottleneck). Throws ImageError when the image is missing and the
   * policy forbids pulling it.
   */
  async needsPull(image: string, policy: PullPolicy): Promise<boolean> {
    if (policy === 'always') return true;
    let present: boolean;
    try {
      present = await this.runtime.hasImage(image);
    } catch (err) {
      // A reference that passed Gantry's grammar but not the engine's: the job's fault.
      if (err instanceof RuntimeError && err.kind === 'bad_request')
        throw new ImageError(`Docker refused the image reference "${image}": ${err.message}`);
      throw err;
    }
    if (present) return false;
    if (policy === 'never') throw new ImageError(`image "${image}" is not present on this host and the pull policy is "never"`);
    return true;
  }

  async pull(image: string, onProgress: (status: string, progress: string | null) => void): Promise<void> {
    const registry = registryOf(image);
    const creds = this.logins[registry];
    try {
      await this.runtime.pullImage(image, creds ? { ...creds, serveraddress: registry } : null, onProgress);
    } catch (err) {
      if (err instanceof RuntimeError && err.kind === 'unreachable') throw err;
      throw new ImageError(`pulling "${image}" failed: ${(err as Error).message}`);
    }
  }
}
