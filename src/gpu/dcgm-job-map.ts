import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { GpuAllocator } from './allocator.js';

/**
 * Keeps dcgm-exporter's HPC job mapping (`DCGM_HPC_JOB_MAPPING_DIR`) in step
 * with the allocator, so a site's stock dcgm-exporter labels each GPU's
 * metrics `hpc_job="<job id>"` without Gantry in the metrics path.
 *
 * The exporter's rules (internal/pkg/transformation/hpc.go): it reads every
 * plain file of the directory whose name parses as an integer, the GPU's
 * index; each line of it is a job id, and each metric of that GPU is emitted
 * once per line, with that job as its label. So:
 * - a held card's file lists every holder (a shared card, each of its jobs),
 *   one id a line, in the order they took it;
 * - a card nobody holds has no file: an empty file would make the exporter
 *   emit no series at all for that card;
 * - a file is written under a temporary name that is not an integer (which
 *   the exporter skips) and renamed into place, so a scrape never reads half
 *   a file.
 * Files named by other indexes are left alone: the directory may be shared
 * with whatever else maps jobs on the host.
 */
export class DcgmJobMap {
  private readonly indexOf: ReadonlyMap<string, number>;

  constructor(
    private readonly dir: string,
    private readonly gpus: GpuAllocator,
    /** A file that cannot be written or removed: told, never thrown, so a full disk never stops a job from starting or ending. */
    private readonly onError: (err: Error, file: string) => void,
  ) {
    this.indexOf = new Map(gpus.devices.map((d) => [d.uuid, d.index]));
  }

  /**
   * Writes every card's file from the allocator's holders now, removing
   * those left by a process that died with jobs on them, then follows each
   * change.
   */
  start(): void {
    try {
      fs.mkdirSync(this.dir, { recursive: true });
    } catch (err) {
      throw new Error(`GANTRY_DCGM_JOB_MAPPING_DIR: cannot create ${this.dir}: ${(err as Error).message}`, { cause: err });
    }
    this.sync(this.gpus.devices.map((d) => d.uuid));
    this.gpus.onHoldersChange((uuids) => this.sync(uuids));
  }

  private sync(uuids: readonly string[]): void {
    for (const uuid of uuids) {
      const index = this.indexOf.get(uuid);
      if (index === undefined) continue;
      const file = path.join(this.dir, String(index));
      try {
        const jobs = this.gpus.holders(uuid).map((h) => h.jobId);
        if (jobs.length === 0) fs.rmSync(file, { force: true });
        else writeAtomically(file, `${jobs.join('\n')}\n`);
      } catch (err) {
        this.onError(err as Error, file);
      }
    }
  }
}

/**
 * The folder may be shared, so the temporary file's name cannot be guessed
 * and it is created afresh (`wx`): never written through a link another
 * user planted under a name known in advance.
 */
function writeAtomically(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.gantry-${crypto.randomBytes(12).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, text, { mode: 0o644, flag: 'wx' });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
