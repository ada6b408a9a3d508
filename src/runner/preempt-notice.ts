import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ResolvedMount } from '../jobs/policy.js';
import { GANTRY_CONTAINER_DIR } from '../model/job.js';
import { ownFolder } from './host-folder.js';

/** Where a preemptible job's container sees its notice folder, and the variable naming the notice file. */
export const NOTICE_MOUNT = GANTRY_CONTAINER_DIR;
export const NOTICE_FILE = `${NOTICE_MOUNT}/preempt.json`;
export const NOTICE_ENV = 'GANTRY_PREEMPT_NOTICE_FILE';

/** What a preempted job reads in its notice file. */
export interface PreemptNoticeBody {
  reason: string;
  /** When SIGTERM is sent (at once), and when SIGKILL follows at the latest. */
  signalAt: string;
  killAt: string;
  /** The attempt that is preempted; the next one is queued as soon as it ends. */
  attempt: number;
}

/**
 * A preemptible run's notice folder on the host, one per node and attempt
 * under GANTRY_NOTICE_DIR, bind-mounted read-only at NOTICE_MOUNT: empty
 * until Gantry preempts the job, then holding preempt.json, written before
 * SIGTERM so that a job polling the file (or trapping SIGTERM) can save a
 * checkpoint. The folder is mounted rather than the file, so a file written
 * after the start is seen inside; it lives as long as the container, and
 * a restarted Gantry re-adopting the container finds it where it was.
 */
export class PreemptNotice {
  private readonly dir: string;

  constructor(noticeDir: string, node: string, jobId: string, attempt: number) {
    this.dir = path.join(noticeDir, node, `${jobId}-${attempt}`);
  }

  /** The folder's mount and the variable naming the file, for the container. */
  mount(): { mount: ResolvedMount; env: Record<string, string> } {
    return { mount: { type: 'bind', source: this.dir, target: NOTICE_MOUNT, readOnly: true }, env: { [NOTICE_ENV]: NOTICE_FILE } };
  }

  /** Makes the (empty) folder; a container cannot be created with a bind mount whose source is missing. */
  async prepare(): Promise<void> {
    // The job's user (not Gantry's) must be able to read the folder itself; the folders above it are Gantry's alone.
    await ownFolder(this.dir, 0o755);
  }

  /**
   * Writes the notice whole (a rename), so a job never reads half of it;
   * the temporary file's name cannot be guessed and it is created afresh
   * (`wx`), never written through a link planted under that name.
   */
  async write(body: PreemptNoticeBody): Promise<void> {
    const tmp = path.join(this.dir, `.preempt.${crypto.randomBytes(12).toString('hex')}.tmp`);
    await fs.writeFile(tmp, `${JSON.stringify(body)}\n`, { mode: 0o444, flag: 'wx' });
    await fs.rename(tmp, path.join(this.dir, 'preempt.json'));
  }

  /** The notice written for this attempt, if any (a run adopted after a restart learns it was being preempted). */
  async read(): Promise<PreemptNoticeBody | null> {
    try {
      return JSON.parse(await fs.readFile(path.join(this.dir, 'preempt.json'), 'utf8')) as PreemptNoticeBody;
    } catch {
      return null;
    }
  }

  async remove(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}
