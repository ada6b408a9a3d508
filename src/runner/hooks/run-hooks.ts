import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { ResolvedMount } from '../../jobs/policy.js';
import type { TextFilter } from '../../logs/secret-redactor.js';
import type { JsonValue } from '../../model/job.js';
import type { SecretSource } from '../../secrets/source.js';
import type { JobRecord } from '../../store/store.js';
import { type ResultRead, redactDocument } from '../result-file.js';
import type { Interruption } from '../run-state.js';
import type { RunHook, StopNotice } from './hook.js';
import { NoticeHook } from './notice.js';
import { ResultHook } from './result.js';
import { SecretsHook } from './secrets.js';

/**
 * The hooks of one run, called in order at each point of its life: its
 * secrets, then (for a preemptible job) its preemption notice, then (for a
 * job that asks for one) its result file. A new side
 * concern of a run is one more hook here.
 */
export class RunHooks {
  private constructor(private readonly hooks: readonly RunHook[]) {}

  static of(record: JobRecord, node: string, d: { config: Config; secrets: SecretSource; log: Logger }): RunHooks {
    const run = { node, jobId: record.id, attempt: record.attempt, log: d.log };
    const hooks: RunHook[] = [
      new SecretsHook({
        ...run,
        source: d.secrets,
        owner: record.owner,
        refs: record.spec.secrets ?? [],
        privateEnv: record.spec.privateEnv ?? {},
        runDir: d.config.secrets.runDir,
      }),
    ];
    if (record.spec.preemptible) hooks.push(new NoticeHook({ ...run, noticeDir: d.config.noticeDir }));
    if (record.spec.resultFile) hooks.push(new ResultHook({ ...run, ...d.config.results }));
    return new RunHooks(hooks);
  }

  /** Every hook's mounts, in hook order, and their environment (a later hook's variable wins). */
  async prestart(): Promise<{ mounts: ResolvedMount[]; env: Record<string, string> }> {
    const mounts: ResolvedMount[] = [];
    const env: Record<string, string> = {};
    for (const h of this.hooks) {
      const add = (await h.prestart?.()) ?? {};
      mounts.push(...(add.mounts ?? []));
      Object.assign(env, add.env);
    }
    return { mounts, env };
  }

  async starting(): Promise<void> {
    for (const h of this.hooks) await h.starting?.();
  }

  async poststart(): Promise<void> {
    for (const h of this.hooks) await h.poststart?.();
  }

  /** The hooks' changes to a stream's text, applied in hook order; undefined when no hook changes output. */
  async output(): Promise<(() => TextFilter) | undefined> {
    const makers: (() => TextFilter)[] = [];
    for (const h of this.hooks) {
      const f = await h.output?.();
      if (f) makers.push(f);
    }
    if (makers.length === 0) return undefined;
    if (makers.length === 1) return makers[0];
    return () => {
      const filters = makers.map((make) => make());
      // What one filter holds back at the end is handed to the next before that one ends.
      return {
        push: (text) => filters.reduce((t, f) => f.push(t), text),
        end: () => filters.reduce((t, f) => f.push(t) + f.end(), ''),
      };
    };
  }

  /** The first interruption a hook knows was under way when the adopted container was left. */
  async adopted(): Promise<Interruption | null> {
    for (const h of this.hooks) {
      const why = await h.adopted?.();
      if (why) return why;
    }
    return null;
  }

  /**
   * The result document a hook holds, once the container exited, redacted
   * as the output is; null when the job wrote none. A file that is refused
   * (too large, not JSON) is told with `note`, in the job's log, and gives
   * the document null: the job's result is then null, not its stdout.
   */
  async result(note: (line: string) => void): Promise<{ document: JsonValue | null } | null> {
    let read: ResultRead = { kind: 'none' };
    for (const h of this.hooks) {
      read = (await h.result?.()) ?? read;
      if (read.kind !== 'none') break;
    }
    if (read.kind === 'refused') note(`[gantry] the result file is not taken as the job's result: ${read.why}`);
    if (read.kind === 'none') return null;
    if (read.kind === 'refused') return { document: null };
    const filter = await this.output();
    if (!filter) return { document: read.document as JsonValue };
    // Each string of the document is a text of its own: redacted whole, nothing held across strings.
    const redact = (text: string) => {
      const f = filter();
      return f.push(text) + f.end();
    };
    return { document: redactDocument(read.document, redact) as JsonValue };
  }

  async stop(notice: StopNotice): Promise<void> {
    for (const h of this.hooks) await h.stop?.(notice);
  }

  async ended(): Promise<void> {
    for (const h of this.hooks) await h.ended?.();
  }

  async cleanup(): Promise<void> {
    for (const h of this.hooks) await h.cleanup?.();
  }
}
