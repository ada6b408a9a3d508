import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ResolvedMount } from '../jobs/policy.js';

/** Where a job's container sees its result folder, and the variable naming the file it may write there. */
export const RESULT_MOUNT = '/run/gantry-result';
export const RESULT_FILE = `${RESULT_MOUNT}/result.json`;
export const RESULT_ENV = 'GANTRY_RESULT_FILE';

/** What the job left in its result file: a JSON document, nothing, or why what it left is not taken. */
export type ResultRead = { kind: 'document'; document: unknown } | { kind: 'none' } | { kind: 'refused'; why: string };

/**
 * One attempt's result folder on the host, under GANTRY_RESULT_DIR (one per
 * node, job and attempt), bind-mounted writable at RESULT_MOUNT: the job may
 * write one JSON document to RESULT_FILE, which becomes the job's `result`.
 * The folder is writable by any user (the job runs as whoever its spec or
 * the policy says) and lives inside GANTRY_RESULT_DIR, which is 0700, so no
 * other host user reaches it. It outlives a Gantry restart with its
 * container, and goes once the attempt's end is recorded.
 */
export class ResultFolder {
  private readonly dir: string;

  constructor(
    private readonly root: string,
    node: string,
    jobId: string,
    attempt: number,
  ) {
    this.dir = path.join(root, node, `${jobId}-${attempt}`);
  }

  mount(): { mount: ResolvedMount; env: Record<string, string> } {
    return { mount: { type: 'bind', source: this.dir, target: RESULT_MOUNT, readOnly: false }, env: { [RESULT_ENV]: RESULT_FILE } };
  }

  /** Makes the (empty) folder; mkdir's mode is masked by the umask, so the modes are set after. */
  async prepare(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fs.chmod(this.root, 0o700);
    await fs.chmod(this.dir, 0o777);
  }

  /**
   * The document the job wrote, read once it exited. The file is the job's
   * own: it is opened without following a link and without blocking (a
   * FIFO), read only as a regular file of at most `maxBytes`, and must be
   * one JSON document in UTF-8.
   */
  async read(maxBytes: number): Promise<ResultRead> {
    let file: fs.FileHandle;
    try {
      file = await fs.open(path.join(this.dir, 'result.json'), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
      return { kind: 'refused', why: `it cannot be opened as a file (${(err as NodeJS.ErrnoException).code})` };
    }
    try {
      const stat = await file.stat();
      if (!stat.isFile()) return { kind: 'refused', why: 'it is not a regular file' };
      if (stat.size > maxBytes)
        return { kind: 'refused', why: `it holds ${stat.size} bytes, more than ${maxBytes} (GANTRY_RESULT_MAX_BYTES)` };
      const buf = Buffer.alloc(stat.size);
      const { bytesRead } = await file.read(buf, 0, stat.size, 0);
      try {
        return { kind: 'document', document: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, bytesRead))) };
      } catch (err) {
        return { kind: 'refused', why: `it is not one JSON document in UTF-8 (${(err as Error).message})` };
      }
    } finally {
      await file.close();
    }
  }

  async remove(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/** A document with every string in it (keys too) passed through `redact`: a secret the job wrote is taken out as from its log. */
export function redactDocument(value: unknown, redact: (s: string) => string): unknown {
  if (typeof value === 'string') return redact(value);
  if (Array.isArray(value)) return value.map((v) => redactDocument(v, redact));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [redact(k), redactDocument(v, redact)]));
  }
  return value;
}
