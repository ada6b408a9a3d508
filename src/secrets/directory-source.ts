import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { SECRET_NAME } from '../model/job.js';
import { type SecretSource, SecretUnavailableError } from './source.js';

/** The file in the directory that says who may use which secret; a dotfile, so never a secret's name. */
export const OWNERS_FILE = '.owners.json';
/** The largest secret read: secrets are credentials and keys, not data. */
export const SECRET_MAX_BYTES = 1024 * 1024;

const OwnersSchema = z.record(
  z.string().regex(SECRET_NAME, 'not a secret name'),
  z.array(z.string().min(1)).describe('owners allowed the secret; "*" is every owner'),
);

/**
 * Secrets as files in one directory the operator controls, one per secret
 * and named after it (a Kubernetes secret volume has this shape too: its
 * `..data` links resolve inside the directory), plus `.owners.json`:
 * `{"hf-token": ["airflow", "team-a"], "bucket-key": ["*"]}`. A secret no
 * entry names is allowed to nobody. Both are read on every use, so a value
 * rotated or an owner removed applies to the next run without a restart.
 */
export class DirectorySecretSource implements SecretSource {
  private constructor(private readonly dir: string) {}

  /** Opens the directory, refusing a missing one or an owners file that does not parse. */
  static async open(dir: string): Promise<DirectorySecretSource> {
    const real = await fs.realpath(dir).catch(() => {
      throw new Error(`"${dir}" does not exist`);
    });
    if (!(await fs.stat(real)).isDirectory()) throw new Error(`"${dir}" is not a directory`);
    const source = new DirectorySecretSource(real);
    await source.owners();
    return source;
  }

  async mayUse(owner: string, name: string): Promise<boolean> {
    try {
      return this.allowed(await this.owners(), owner, name) && (await this.file(name)) !== null;
    } catch {
      return false;
    }
  }

  async read(owner: string, name: string): Promise<Buffer> {
    let owners: Record<string, string[]>;
    try {
      owners = await this.owners();
    } catch (err) {
      // The parse error quotes the file and names other secrets: the operator's log has it, the owner's job does not.
      throw new SecretUnavailableError(name, `${OWNERS_FILE} cannot be read now (the operator's log says why)`, (err as Error).message);
    }
    if (!this.allowed(owners, owner, name)) throw new SecretUnavailableError(name, `owner "${owner}" may not use it (${OWNERS_FILE})`);
    const file = await this.file(name);
    if (file === null) throw new SecretUnavailableError(name, 'no such file in GANTRY_SECRETS_DIR');
    const value = await fs.readFile(file).catch((err: Error) => {
      throw new SecretUnavailableError(name, err.message);
    });
    if (value.length > SECRET_MAX_BYTES) throw new SecretUnavailableError(name, `larger than ${SECRET_MAX_BYTES} bytes`);
    return value;
  }

  private allowed(owners: Record<string, string[]>, owner: string, name: string): boolean {
    const list = Object.hasOwn(owners, name) ? owners[name]! : [];
    return list.includes('*') || list.includes(owner);
  }

  private async owners(): Promise<Record<string, string[]>> {
    const file = path.join(this.dir, OWNERS_FILE);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new Error(`${OWNERS_FILE}: ${(err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`${OWNERS_FILE} is not JSON: ${(err as Error).message}`);
    }
    const parsed = OwnersSchema.safeParse(json);
    if (!parsed.success) {
      throw new Error(`${OWNERS_FILE}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
    }
    return parsed.data;
  }

  /** The secret's file, resolved; null unless it is a regular file inside the directory. */
  private async file(name: string): Promise<string | null> {
    try {
      const real = await fs.realpath(path.join(this.dir, name));
      if (!real.startsWith(`${this.dir}${path.sep}`)) return null;
      return (await fs.stat(real)).isFile() ? real : null;
    } catch {
      return null;
    }
  }
}
