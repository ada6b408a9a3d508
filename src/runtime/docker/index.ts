import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import { normalizeImage } from '../../model/image-ref.js';
import {
  type ContainerExit,
  type ContainerRuntime,
  type ContainerSpec,
  type ContainerStatus,
  MANAGED_LABELS,
  type ManagedContainer,
  type RegistryCredentials,
  RuntimeError,
  type RuntimeOp,
} from '../runtime.js';
import { createOptions } from './create-options.js';
import { toRuntimeError } from './errors.js';

export interface DockerRuntimeOptions {
  /** The engine's socket; or pass `docker`, a client already made. */
  socketPath?: string;
  docker?: Docker;
  log: Logger;
  /** Told of every failed engine call, by operation (for metrics). */
  onError?: (op: RuntimeOp, err: RuntimeError) => void;
  /** Told of every engine call's duration in seconds, failed or not (for metrics). */
  onCall?: (op: RuntimeOp, seconds: number) => void;
}

/** How often the engine is pinged while containers are waited for. */
const WAIT_HEARTBEAT_MS = 2000;

interface ProgressEvent {
  status?: string;
  progress?: string;
  id?: string;
  error?: string;
  errorDetail?: { message?: string };
}

/**
 * The Docker Engine, through dockerode. Every call goes through `call()`,
 * which turns dockerode's errors into RuntimeError (with the engine's own
 * text), counts failures and logs them: no caller handles a dockerode error.
 */
export class DockerRuntime implements ContainerRuntime {
  private readonly docker: Docker;
  /** Pending waits, each failed at once when the engine stops answering. */
  private readonly waits = new Set<(err: RuntimeError) => void>();
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(private readonly o: DockerRuntimeOptions) {
    this.docker = o.docker ?? new Docker({ socketPath: o.socketPath ?? '/var/run/docker.sock' });
  }

  /** Runs one engine call; an HTTP status in `spare.statuses` is an answer (`spare.value`), not a failure. */
  private async call<T>(op: RuntimeOp, fn: () => Promise<T>, spare?: { statuses: number[]; value: T }): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } catch (raw) {
      const status = (raw as { statusCode?: number } | null)?.statusCode;
      if (spare && status !== undefined && spare.statuses.includes(status)) return spare.value;
      const err = toRuntimeError(op, raw);
      this.o.onError?.(op, err);
      this.o.log.debug({ op, kind: err.kind, err: err.message }, 'container engine call failed');
      throw err;
    } finally {
      this.o.onCall?.(op, (performance.now() - start) / 1000);
    }
  }

  ping(): Promise<void> {
    return this.call('ping', async () => {
      await this.docker.ping();
    });
  }

  hasImage(image: string): Promise<boolean> {
    return this.call(
      'image',
      async () => {
        await this.docker.getImage(normalizeImage(image)).inspect();
        return true;
      },
      { statuses: [404], value: false },
    );
  }

  async pullImage(
    image: string,
    auth: RegistryCredentials | null,
    onProgress: (status: string, progress: string | null) => void,
  ): Promise<void> {
    const stream = await this.call(
      'pull',
      async () => (await this.docker.pull(normalizeImage(image), auth ? { authconfig: auth } : {})) as NodeJS.ReadableStream,
    );
    let lastReport = 0;
    await this.call(
      'pull',
      () =>
        new Promise<void>((resolve, reject) => {
          this.docker.modem.followProgress(
            stream,
            (err: Error | null, events: ProgressEvent[]) => {
              if (err) return reject(err);
              // Registry errors arrive inside the stream, not as a transport error.
              const failed = events.find((e) => e.error || e.errorDetail);
              if (failed) return reject(new RuntimeError('other', 'pull', failed.errorDetail?.message ?? failed.error ?? 'pull failed'));
              resolve();
            },
            (e: ProgressEvent) => {
              const now = Date.now();
              if (now - lastReport < 1000) return;
              lastReport = now;
              onProgress(e.id ? `${e.id}: ${e.status ?? ''}` : (e.status ?? 'pulling'), e.progress ?? null);
            },
          );
        }),
    );
  }

  create(spec: ContainerSpec): Promise<string> {
    return this.call('create', async () => (await this.docker.createContainer(createOptions(spec))).id);
  }

  attach(id: string): Promise<Readable> {
    return this.call(
      'attach',
      async () =>
        (await this.docker.getContainer(id).attach({ stream: true, stdout: true, stderr: true, logs: false })) as unknown as Readable,
    );
  }

  start(id: string): Promise<void> {
    return this.call(
      'start',
      async () => {
        await this.docker.getContainer(id).start();
      },
      // 304: already started.
      { statuses: [304], value: undefined },
    );
  }

  followLogs(id: string): Promise<Readable> {
    return this.call(
      'logs',
      async () => (await this.docker.getContainer(id).logs({ follow: true, stdout: true, stderr: true })) as unknown as Readable,
    );
  }

  /**
   * A wait is a long-poll whose response headers the engine sends at once;
   * when the engine dies, the connection can close without the request ever
   * failing. So while any wait is pending the engine is pinged every few
   * seconds, and a ping that fails aborts every pending wait as unreachable.
   */
  async wait(id: string): Promise<ContainerExit> {
    const abort = new AbortController();
    let fail!: (err: RuntimeError) => void;
    const lost = new Promise<never>((_, reject) => {
      fail = (err) => {
        abort.abort();
        reject(err);
      };
    });
    this.waits.add(fail);
    this.beat();
    try {
      await Promise.race([this.call('wait', () => this.docker.getContainer(id).wait({ abortSignal: abort.signal })), lost]);
    } finally {
      this.waits.delete(fail);
    }
    const status = await this.inspect(id);
    if (!status) throw new RuntimeError('not_found', 'wait', `container ${id} vanished before its exit could be read`);
    return status.exit;
  }

  private beat(): void {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      if (this.waits.size === 0) {
        clearInterval(this.heartbeat!);
        this.heartbeat = null;
        return;
      }
      this.docker.ping().catch((raw: unknown) => {
        const err = toRuntimeError('wait', raw);
        if (err.kind !== 'unreachable') return;
        for (const fail of [...this.waits]) fail(err);
      });
    }, WAIT_HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  async inspect(id: string): Promise<ContainerStatus | null> {
    return this.call(
      'inspect',
      async () => {
        const info = await this.docker.getContainer(id).inspect();
        const finished = info.State.FinishedAt;
        return {
          running: info.State.Running === true,
          exit: { exitCode: info.State.ExitCode ?? null, oomKilled: info.State.OOMKilled === true, error: info.State.Error || null },
          finishedAt: finished && !finished.startsWith('0001-') ? finished : null,
        };
      },
      { statuses: [404], value: null },
    );
  }

  stop(id: string, graceSeconds: number): Promise<void> {
    return this.call(
      'stop',
      async () => {
        await this.docker.getContainer(id).stop({ t: graceSeconds });
      },
      // 304: already stopped; 404: already gone.
      { statuses: [304, 404], value: undefined },
    );
  }

  remove(id: string): Promise<void> {
    return this.call(
      'remove',
      async () => {
        await this.docker.getContainer(id).remove({ force: true });
      },
      { statuses: [404], value: undefined },
    );
  }

  /**
   * `docker top` with `ps -o pid`: the engine lists the container's
   * processes from its cgroup and prints their host ids, whichever cgroup
   * version or driver the host uses, and wherever Gantry itself runs.
   */
  processes(id: string): Promise<number[]> {
    return this.call(
      'top',
      async () => {
        const top = (await this.docker.getContainer(id).top({ ps_args: '-o pid' })) as { Titles?: string[]; Processes?: string[][] | null };
        const col = (top.Titles ?? []).indexOf('PID');
        if (col < 0) return [];
        return (top.Processes ?? []).map((row) => Number(row[col])).filter((pid) => Number.isInteger(pid) && pid > 0);
      },
      // 404: gone; 409: not running (it ended between the listing and this call).
      { statuses: [404, 409], value: [] },
    );
  }

  listManaged(): Promise<ManagedContainer[]> {
    return this.call('list', async () => {
      const list = await this.docker.listContainers({ all: true, filters: { label: [`${MANAGED_LABELS.managed}=true`] } });
      return list.map((c) => ({
        id: c.Id,
        names: c.Names,
        labels: c.Labels,
        state: c.State as ManagedContainer['state'],
        created: c.Created,
      }));
    });
  }
}
