import fs from 'node:fs/promises';
import path from 'node:path';
import type { ResolvedMount } from '../jobs/policy.js';
import { type NamedSecret, SECRET_MIN_LENGTH } from '../logs/secret-redactor.js';
import type { SecretRef } from '../model/job.js';
import { type SecretSource, SecretUnavailableError } from '../secrets/source.js';
import { ownFolder } from './host-folder.js';

/** A run's secrets, read from the source: held in memory for the run's life only. */
export interface RunSecrets {
  values: NamedSecret[];
  /** The secrets delivered as environment variables (one trailing newline dropped, as from a file written by `echo`). */
  env: Record<string, string>;
}

/** Reads every secret the spec names, for a run of `owner`'s job; rejects with SecretUnavailableError. */
export async function readSecrets(source: SecretSource, owner: string, refs: readonly SecretRef[]): Promise<RunSecrets> {
  return runSecretsOf(
    refs,
    await Promise.all(
      refs.map(async (ref) => {
        const value = await source.read(owner, ref.name);
        if (value.toString('utf8').replace(/\r?\n$/, '').length < SECRET_MIN_LENGTH) {
          throw new SecretUnavailableError(
            ref.name,
            `shorter than ${SECRET_MIN_LENGTH} characters, too short to redact from the job's logs`,
          );
        }
        return { name: ref.name, value };
      }),
    ),
  );
}

/** A run's secrets from their values, one per ref in order. */
export function runSecretsOf(refs: readonly SecretRef[], values: NamedSecret[]): RunSecrets {
  const env: Record<string, string> = {};
  refs.forEach((ref, i) => {
    if (ref.env !== undefined) env[ref.env] = values[i]!.value.toString('utf8').replace(/\r?\n$/, '');
  });
  return { values, env };
}

/**
 * Makes the node's folder of secret files Gantry's own (host-folder.ts),
 * removing what a node that stopped abruptly left in it. Safe before the
 * node runs anything: files are needed only between creating a container
 * and starting it, and a created container is started only after its files
 * are written again.
 */
export async function prepareSecretFiles(runDir: string, node: string): Promise<void> {
  await ownFolder(runDir);
  await fs.rm(path.join(runDir, node), { recursive: true, force: true });
  await ownFolder(path.join(runDir, node));
}

/**
 * The files of a run's file secrets, on the host: one directory per node and
 * attempt (mode 0700, Gantry's own like every folder above it, so no other
 * host user reaches or replaces them) under GANTRY_SECRETS_RUN_DIR,
 * which should be a tmpfs, each file read-only and bind-mounted read-only at
 * the path the spec names. The engine needs them from creating the
 * container to starting it; once started, the container keeps its mounts
 * and the files are removed, so a value rests on the host for moments.
 */
export class SecretFiles {
  private readonly dir: string;

  constructor(
    runDir: string,
    node: string,
    jobId: string,
    attempt: number,
    private readonly refs: readonly SecretRef[],
  ) {
    this.dir = path.join(runDir, node, `${jobId}-${attempt}`);
  }

  /** The bind mounts of the file secrets (their sources exist once `write` has run). */
  mounts(): ResolvedMount[] {
    return this.refs.flatMap((ref, i) =>
      ref.file === undefined ? [] : [{ type: 'bind' as const, source: path.join(this.dir, String(i)), target: ref.file, readOnly: true }],
    );
  }

  /** Writes the files (again, if they were removed: a created container is started only after this). */
  async write(secrets: RunSecrets): Promise<void> {
    if (!this.refs.some((r) => r.file !== undefined)) return;
    await ownFolder(this.dir);
    await Promise.all(
      this.refs.map(async (ref, i) => {
        if (ref.file === undefined) return;
        const file = path.join(this.dir, String(i));
        await fs.rm(file, { force: true });
        await fs.writeFile(file, secrets.values[i]!.value, { mode: 0o444, flag: 'wx' });
      }),
    );
  }

  async remove(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}
