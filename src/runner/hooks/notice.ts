import type { Logger } from 'pino';
import { PreemptNotice } from '../preempt-notice.js';
import type { Interruption } from '../run-state.js';
import type { ContainerAdditions, RunHook, StopNotice } from './hook.js';

export interface NoticeHookOptions {
  /** GANTRY_NOTICE_DIR. */
  noticeDir: string;
  node: string;
  jobId: string;
  attempt: number;
  log: Logger;
}

/**
 * A preemptible run's notice (preempt-notice.ts): its folder is mounted
 * into the container, the notice is written there before SIGTERM when the
 * run is preempted, a restarted Gantry learns from it that the adopted
 * container was being preempted, and the folder goes once the end is
 * recorded (not before: it must outlive a restart).
 */
export class NoticeHook implements RunHook {
  private readonly notice: PreemptNotice;

  constructor(private readonly o: NoticeHookOptions) {
    this.notice = new PreemptNotice(o.noticeDir, o.node, o.jobId, o.attempt);
  }

  async prestart(): Promise<ContainerAdditions> {
    await this.notice.prepare();
    const { mount, env } = this.notice.mount();
    return { mounts: [mount], env };
  }

  /** The container's end is then the preemption's, not the job's own failure. */
  async adopted(): Promise<Interruption | null> {
    const notice = await this.notice.read();
    return notice ? { cause: 'preempted', reason: notice.reason } : null;
  }

  async stop({ why, signalAt, killAt, hasContainer }: StopNotice): Promise<void> {
    if (why.cause !== 'preempted' || !hasContainer) return;
    await this.notice
      .write({ reason: why.reason, signalAt, killAt, attempt: this.o.attempt })
      .catch((err) => this.o.log.error({ err, jobId: this.o.jobId }, 'could not write the preemption notice; stopping the job anyway'));
  }

  async ended(): Promise<void> {
    await this.notice.remove().catch((err) => this.o.log.warn({ err, jobId: this.o.jobId }, 'could not remove the notice folder'));
  }
}
