import type { Logger } from 'pino';
import { SecretRedactor, type TextFilter } from '../../logs/secret-redactor.js';
import type { SecretRef } from '../../model/job.js';
import { type SecretSource, SecretUnavailableError } from '../../secrets/source.js';
import { HeldSecrets } from '../held-secrets.js';
import { type RunSecrets, readSecrets, runSecretsOf, SecretFiles } from '../secret-delivery.js';
import { type ContainerAdditions, JobFailure, type RunHook } from './hook.js';

export interface SecretsHookOptions {
  source: SecretSource;
  owner: string;
  refs: readonly SecretRef[];
  /** The spec's private variables: their values are redacted from the output with the secrets'. */
  privateEnv: Readonly<Record<string, string>>;
  /** GANTRY_SECRETS_RUN_DIR, where the file secrets rest between creating and starting the container. */
  runDir: string;
  node: string;
  jobId: string;
  attempt: number;
  log: Logger;
}

/**
 * The run's secrets: read from the source once per attempt and held for its
 * life (held-secrets.ts), given to the container as environment variables
 * and short-lived files (secret-delivery.ts), and taken out of its output
 * with the values of the spec's private variables. After a restart the
 * attempt goes on with the values it started with, so a value rotated
 * meanwhile does not stop the old one being redacted. A secret that cannot
 * be had fails the job: it would run without it, or its output could no
 * longer be redacted.
 */
export class SecretsHook implements RunHook {
  private secrets: RunSecrets | null = null;
  private redactor: SecretRedactor | null = null;
  private readonly files: SecretFiles;
  private readonly held: HeldSecrets;

  constructor(private readonly o: SecretsHookOptions) {
    this.files = new SecretFiles(o.runDir, o.node, o.jobId, o.attempt, o.refs);
    this.held = new HeldSecrets(o.runDir, o.node, o.jobId, o.attempt);
  }

  async prestart(): Promise<ContainerAdditions> {
    const secrets = await this.read();
    await this.files.write(secrets);
    return { mounts: this.files.mounts(), env: secrets.env };
  }

  /** A container created before a restart is started only with its secret files back in place. */
  async starting(): Promise<void> {
    await this.files.write(await this.read());
  }

  /** The started container keeps its mounts: the files are needed no longer. */
  async poststart(): Promise<void> {
    await this.drop();
  }

  async output(): Promise<(() => TextFilter) | null> {
    await this.read();
    const redactor = this.redactor;
    return redactor ? () => redactor.stream() : null;
  }

  async cleanup(): Promise<void> {
    await this.drop();
  }

  /** The attempt is over: no later run of it needs its values. */
  async ended(): Promise<void> {
    await this.held.remove().catch((err) => this.o.log.error({ err, jobId: this.o.jobId }, 'could not remove held secret values'));
  }

  private async read(): Promise<RunSecrets> {
    if (this.secrets === null) {
      this.secrets = (await this.heldValues()) ?? (await this.readAndHold());
      const privateValues = Object.entries(this.o.privateEnv).map(([name, value]) => ({
        name: `privateEnv.${name}`,
        value: Buffer.from(value),
      }));
      this.redactor = SecretRedactor.of([...this.secrets.values, ...privateValues]);
    }
    return this.secrets;
  }

  /** What the attempt started with, when it started before a restart. */
  private async heldValues(): Promise<RunSecrets | null> {
    if (this.o.refs.length === 0) return null;
    const held = await this.held.read();
    return held?.length === this.o.refs.length ? runSecretsOf(this.o.refs, held) : null;
  }

  private async readAndHold(): Promise<RunSecrets> {
    let secrets: RunSecrets;
    try {
      secrets = await readSecrets(this.o.source, this.o.owner, this.o.refs);
    } catch (err) {
      if (err instanceof SecretUnavailableError) {
        if (err.detail) this.o.log.error({ jobId: this.o.jobId, secret: err.secret, detail: err.detail }, 'the secret source is broken');
        throw new JobFailure(err.message);
      }
      throw err;
    }
    if (this.o.refs.length > 0) await this.held.write(secrets.values);
    return secrets;
  }

  /** A file that cannot be removed is logged, never the job's failure. */
  private async drop(): Promise<void> {
    await this.files.remove().catch((err) => this.o.log.error({ err, jobId: this.o.jobId }, 'could not remove secret files'));
  }
}
