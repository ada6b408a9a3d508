import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** A folder Gantry writes into is not its own: a link, not a folder, or another user's. */
export class ForeignFolderError extends Error {
  constructor(
    readonly folder: string,
    why: string,
  ) {
    super(`"${folder}" ${why}; remove it (another local user may have made it) and start again`);
    this.name = 'ForeignFolderError';
  }
}

/**
 * Makes `dir` a folder of Gantry's own with `mode`, or proves it is one: a
 * missing parent is made the same way (each folder created alone, never
 * `mkdir -p` through whatever is there), and what exists is looked at with
 * lstat, so a link or a folder another local user made first (in a
 * world-writable parent such as /dev/shm) is refused rather than followed.
 * The mode is set on the folder opened without following links. Inside a
 * folder this made, no other user can plant anything.
 */
export async function ownFolder(dir: string, mode = 0o700): Promise<void> {
  try {
    await fs.mkdir(dir, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && path.dirname(dir) !== dir) {
      await ownFolder(path.dirname(dir));
      return ownFolder(dir, mode);
    }
    if (code !== 'EEXIST') throw err;
  }
  const seen = await fs.lstat(dir);
  if (seen.isSymbolicLink()) throw new ForeignFolderError(dir, 'is a symbolic link, not a folder');
  if (!seen.isDirectory()) throw new ForeignFolderError(dir, 'is not a folder');
  const uid = process.getuid?.() ?? seen.uid;
  if (seen.uid !== uid) throw new ForeignFolderError(dir, `is owned by uid ${seen.uid}, not by Gantry's (uid ${uid})`);
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    const opened = await handle.stat();
    if (opened.ino !== seen.ino || opened.dev !== seen.dev) throw new ForeignFolderError(dir, 'was replaced while it was checked');
    // mkdir's mode is masked by the umask, and a folder kept from an earlier run may have another.
    if ((opened.mode & 0o7777) !== mode) await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}
