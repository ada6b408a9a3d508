import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { loadConfig } from '../../src/config.js';
import { gpuInjection } from '../../src/gpu/inject.js';
import { resolveRunSettings } from '../../src/jobs/run-settings.js';
import { DockerDemuxer } from '../../src/logs/demux.js';
import type { JobSpec } from '../../src/model/job.js';
import { containerSpec } from '../../src/runner/container-spec.js';
import { createOptions } from '../../src/runtime/docker/create-options.js';
import { IMAGE } from './gantry.js';
import { now } from './util.js';

export const docker = new Docker({ socketPath: process.env.GANTRY_DOCKER_SOCKET ?? '/var/run/docker.sock' });

/** Every container the bench makes carries this label, so cleanup touches only those. */
export const BENCH_LABEL = 'gantry-bench';
export const BENCH_LABEL_VALUE = 'true';

export type RawKind = 'same' | 'minimal';

/**
 * Container options for the raw baselines. `same`: exactly what Gantry sends
 * for the job (built by Gantry's own containerSpec and createOptions from the same
 * environment: limits, init, dropped capabilities, log driver), so the
 * comparison isolates Gantry. `minimal`: image, command and network none only.
 */
export function rawOptions(kind: RawKind, command: string[], gantryEnv: Record<string, string>): Docker.ContainerCreateOptions {
  const name = `gantry-bench-raw-${crypto.randomUUID()}`;
  if (kind === 'minimal') {
    return {
      name,
      Image: IMAGE,
      Cmd: command,
      Labels: { [BENCH_LABEL]: BENCH_LABEL_VALUE },
      NetworkDisabled: true,
      HostConfig: { NetworkMode: 'none', LogConfig: { Type: gantryEnv.GANTRY_LOG_DRIVER ?? 'local', Config: {} } },
    };
  }
  const cfg = loadConfig(gantryEnv);
  const spec = { image: IMAGE, command } as JobSpec;
  const opts = createOptions(
    containerSpec(
      {
        jobId: 'raw',
        attempt: 1,
        owner: 'bench',
        spec,
        settings: resolveRunSettings(spec, cfg),
        mounts: [],
        runEnv: {},
        gpu: gpuInjection(cfg.gpus, [], null),
      },
      cfg,
    ),
  );
  return { ...opts, name, Labels: { [BENCH_LABEL]: BENCH_LABEL_VALUE } };
}

export interface RawTiming {
  /** create call → remove resolved (ms). */
  totalMs: number;
  /** create call → wait resolved (ms), i.e. without the remove. */
  toExitMs: number;
  /** after start resolved → exit and the whole output consumed (ms). */
  runMs: number;
  payloadBytes: number;
  exitCode: number;
}

/**
 * One raw dockerode job: create → [attach] → start → [follow logs] → wait → remove.
 * `attach` consumes the attach stream (attached before start, as Gantry does);
 * `followLogs` consumes `docker logs --follow` over the API from right after start.
 * `engine`: the engine to run it on (default the main one; the fleet section uses a node's own).
 */
export async function runRaw(
  opts: Docker.ContainerCreateOptions,
  mode: { attach?: boolean; followLogs?: boolean } = {},
  engine: Docker = docker,
): Promise<RawTiming & { firstByteMs: number | null }> {
  const t0 = now();
  const c = await engine.createContainer(opts);
  let counter: DemuxCounter | null = null;
  let consumed: Promise<void> = Promise.resolve();
  if (mode.attach) {
    const stream = (await c.attach({ stream: true, stdout: true, stderr: true, logs: false })) as unknown as Readable;
    counter = new DemuxCounter();
    consumed = counter.consume(stream);
  }
  await c.start();
  const tStarted = now();
  if (mode.followLogs) {
    const stream = (await c.logs({ follow: true, stdout: true, stderr: true })) as unknown as Readable;
    counter = new DemuxCounter();
    consumed = counter.consume(stream);
  }
  const exit = (await c.wait()) as { StatusCode: number };
  const tExit = now();
  await consumed;
  const tConsumed = now();
  await c.remove({ force: true });
  const tRemoved = now();
  return {
    totalMs: tRemoved - t0,
    toExitMs: tExit - t0,
    runMs: tConsumed - tStarted,
    payloadBytes: counter?.payloadBytes ?? 0,
    exitCode: exit.StatusCode,
    firstByteMs: counter?.firstByteAt != null ? counter.firstByteAt - tStarted : null,
  };
}

/**
 * Counts the payload of Docker's multiplexed stream (8-byte frame headers)
 * without copying it: the least work a consumer can do.
 */
export class DemuxCounter {
  payloadBytes = 0;
  wireBytes = 0;
  firstByteAt: number | null = null;
  lastByteAt: number | null = null;
  // Gantry's own frame parser, counting instead of splitting lines.
  private readonly demux = new DockerDemuxer((_stream, payload) => (this.payloadBytes += payload.length));

  consume(stream: Readable): Promise<void> {
    return new Promise((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        const t = now();
        if (this.firstByteAt === null) this.firstByteAt = t;
        this.lastByteAt = t;
        this.feed(chunk);
      });
      // The hijacked attach socket may close without 'end'.
      stream.once('end', () => resolve());
      stream.once('close', () => resolve());
      stream.once('error', () => resolve());
    });
  }

  private feed(chunk: Buffer): void {
    this.wireBytes += chunk.length;
    this.demux.feed(chunk);
  }
}

/**
 * Docker `destroy` events of the bench's Gantry jobs (by job id), so a
 * Gantry job counts as done only once its container is removed, as the raw
 * baseline's does.
 */
export class DestroyWatcher {
  private readonly seen = new Map<string, number>();
  private readonly waiters = new Map<string, (t: number) => void>();
  private stream: Readable | null = null;

  async start(): Promise<void> {
    this.stream = (await docker.getEvents({
      filters: { type: ['container'], event: ['destroy'], label: [`${BENCH_LABEL}=${BENCH_LABEL_VALUE}`] },
    })) as unknown as Readable;
    let pending = '';
    this.stream.on('data', (d: Buffer) => {
      const t = now();
      pending += d.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim()) continue;
        const ev = JSON.parse(line) as { Actor?: { Attributes?: Record<string, string> } };
        const jobId = ev.Actor?.Attributes?.['dev.gantry.job-id'];
        if (!jobId) continue;
        const w = this.waiters.get(jobId);
        if (w) {
          this.waiters.delete(jobId);
          w(t);
        } else this.seen.set(jobId, t);
      }
    });
    this.stream.on('error', () => undefined);
  }

  /** Resolves with the time the container of this job was destroyed. */
  destroyed(jobId: string): Promise<number> {
    const t = this.seen.get(jobId);
    if (t !== undefined) {
      this.seen.delete(jobId);
      return Promise.resolve(t);
    }
    return new Promise((resolve) => this.waiters.set(jobId, resolve));
  }

  stop(): void {
    this.stream?.destroy();
  }
}

/** Removes every container the bench made (raw ones and Gantry jobs it submitted). */
export async function cleanupContainers(): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=${BENCH_LABEL_VALUE}`] } });
  await Promise.all(
    list.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => undefined),
    ),
  );
  return list.length;
}
