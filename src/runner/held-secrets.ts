import fs from 'node:fs/promises';
import path from 'node:path';
import type { NamedSecret } from '../logs/secret-redactor.js';
import { ownFolder } from './host-folder.js';

/** The folder of held values under GANTRY_SECRETS_RUN_DIR: a name no node can have (node names start with a letter or digit). */
const HELD = '.held';

/**
 * The secret values an attempt started with, held for the attempt's life in
 * GANTRY_SECRETS_RUN_DIR (a tmpfs; every folder Gantry's own and 0700, the
 * file 0600), so that after a restart the adopted run redacts the values its
 * container was given, not ones rotated meanwhile, and gives a container
 * created before the restart those same values. Removed when the attempt
 * ends; what an attempt that ended unseen left is swept at the next start.
 */
export class HeldSecrets {
  private readonly file: string;

  constructor(runDir: string, node: string, jobId: string, attempt: number) {
    this.file = path.join(runDir, HELD, node, `${jobId}-${attempt}`);
  }

  /** The values held for the attempt, or null when none are. */
  async read(): Promise<NamedSecret[] | null> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return (JSON.parse(text) as { name: string; value: string }[]).map((s) => ({ name: s.name, value: Buffer.from(s.value, 'base64') }));
  }

  async write(values: readonly NamedSecret[]): Promise<void> {
    await ownFolder(path.dirname(this.file));
    await fs.rm(this.file, { force: true });
    const text = JSON.stringify(values.map((s) => ({ name: s.name, value: s.value.toString('base64') })));
    await fs.writeFile(this.file, text, { mode: 0o600, flag: 'wx' });
  }

  async remove(): Promise<void> {
    await fs.rm(this.file, { force: true });
  }
}

/**
 * Makes the node's folder of held values Gantry's own and removes what no
 * attempt can still need: values held longer than `maxAgeMs`, longer than
 * any run may last (its attempt ended while no Gantry of this node ran).
 */
export async function sweepHeldSecrets(runDir: string, node: string, maxAgeMs: number): Promise<void> {
  const dir = path.join(runDir, HELD, node);
  await ownFolder(path.join(runDir, HELD));
  await ownFolder(dir);
  const cutoff = Date.now() - maxAgeMs;
  for (const name of await fs.readdir(dir)) {
    const file = path.join(dir, name);
    const seen = await fs.lstat(file);
    if (seen.mtimeMs < cutoff) await fs.rm(file, { force: true, recursive: true });
  }
}
