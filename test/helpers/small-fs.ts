// A real, small filesystem for tests of what Gantry does when a disk fills
// up: a tmpfs of a given size, mounted in a fresh temp dir (needs root, or
// CAP_SYS_ADMIN). No fake: the kernel answers ENOSPC itself.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

export interface SmallFs {
  /** The mount point. */
  dir: string;
  /** Bytes a new file can still take. */
  available(): number;
  /**
   * Fills the filesystem with files of zeros until at most `leave` bytes
   * are free (tmpfs counts in pages, so to the page below); returns what is
   * left free. Can be called again after the filesystem took more data.
   */
  fill(leave?: number): number;
  /** Removes what `fill` wrote. */
  free(): void;
  /**
   * Unmounts and removes the mount point. Stop whatever has files open there
   * first: a mount still in use is detached lazily (`umount -l`) so that no
   * test leaves one behind.
   */
  unmount(): void;
}

/**
 * Mounts a tmpfs of `bytes` bytes in a fresh temp dir. Where that is not
 * possible (not root, or mount not permitted, as in an unprivileged
 * container), skips the test with the reason and returns undefined.
 * Unmounting is the caller's, in its t.after, after it stopped what uses it.
 */
export function mountSmallFs(t: TestContext, bytes: number): SmallFs | undefined {
  if (process.getuid?.() !== 0) {
    t.skip('mounting a tmpfs needs root');
    return undefined;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-small-fs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    fs.rmdirSync(dir);
    const why = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim();
    t.skip(`mount -t tmpfs is not permitted here: ${why}`);
    return undefined;
  }
  const fills: string[] = [];
  const available = (): number => {
    const s = fs.statfsSync(dir);
    return s.bavail * s.bsize;
  };
  return {
    dir,
    available,
    fill(leave = 0) {
      const file = path.join(dir, `.fill-${fills.length}`);
      fills.push(file);
      const zeros = Buffer.alloc(64 * 1024);
      const fd = fs.openSync(file, 'w');
      try {
        for (let free = available(); free > leave; free = available()) {
          try {
            fs.writeSync(fd, zeros, 0, Math.min(zeros.length, free - leave));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw err;
          }
        }
      } finally {
        fs.closeSync(fd);
      }
      return available();
    },
    free() {
      for (const file of fills.splice(0)) fs.rmSync(file, { force: true });
    },
    unmount() {
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      }
      fs.rmdirSync(dir);
    },
  };
}
