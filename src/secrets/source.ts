/**
 * Where the values of the secrets jobs name come from. The job spec holds
 * names only; a value is read when a run needs it and is held by nobody
 * after that run: never in the store, the API, or Gantry's own log.
 */
export interface SecretSource {
  /**
   * Whether `owner` may use the secret `name`. A secret that does not exist
   * reads as not allowed, so a refusal does not tell other owners which
   * names exist.
   */
  mayUse(owner: string, name: string): Promise<boolean>;
  /** The value for a run of `owner`'s job; rejects with SecretUnavailableError. */
  read(owner: string, name: string): Promise<Buffer>;
}

/**
 * A secret a run needs cannot be had (gone, no longer allowed, unreadable).
 * Its message becomes the job's reason, read by the job's owner, so it names
 * only this secret; `detail` is for the operator's log alone (what is wrong
 * with a source shared by every owner).
 */
export class SecretUnavailableError extends Error {
  constructor(
    readonly secret: string,
    why: string,
    readonly detail?: string,
  ) {
    super(`secret "${secret}" is not available: ${why}`);
    this.name = 'SecretUnavailableError';
  }
}

/** The source of a Gantry without GANTRY_SECRETS_DIR: it has no secrets. */
export const NO_SECRETS: SecretSource = {
  mayUse: async () => false,
  read: async (_owner, name) => {
    throw new SecretUnavailableError(name, 'no secret source is configured (GANTRY_SECRETS_DIR)');
  },
};
