import { PassThrough, type Readable } from 'node:stream';
import {
  type ContainerExit,
  type ContainerRuntime,
  type ContainerSpec,
  type ContainerStatus,
  MANAGED_LABELS,
  type ManagedContainer,
  RuntimeError,
  type RuntimeOp,
} from '../../src/runtime/runtime.js';
import { frame } from './docker-frames.js';

interface FakeContainer {
  id: string;
  spec: ContainerSpec;
  state: 'created' | 'running' | 'exited';
  created: number;
  exit: ContainerExit;
  /** Everything the container wrote, as Docker's multiplexed frames (what a log driver keeps). */
  frames: Buffer[];
  /** Live readers (attach, followLogs) of the container's output. */
  readers: Set<PassThrough>;
  waiters: (() => void)[];
}

/**
 * A container runtime in memory, for driving the scheduler in milliseconds.
 * Containers do nothing by themselves: a test makes them write output and
 * exit. It keeps the ContainerRuntime contract (RuntimeError on failure,
 * stop and remove of a gone container succeed) and can play an engine that
 * goes away and comes back, with or without live-restore.
 */
export class FakeRuntime implements ContainerRuntime {
  readonly containers = new Map<string, FakeContainer>();
  readonly images = new Set<string>(['local/busybox:latest']);
  readonly calls: RuntimeOp[] = [];
  private away = false;
  private readonly failures = new Map<RuntimeOp, string>();
  private nextId = 1;
  /** Exit code a stop gives a running container (SIGTERM through an init). */
  stopExitCode = 143;

  /** The next call of `op` finds the engine gone (it keeps its containers) for `ms` milliseconds. */
  awayAt(op: RuntimeOp, ms: number): void {
    this.awayOn = { op, ms };
  }

  private awayOn: { op: RuntimeOp; ms: number } | null = null;

  private readonly holds = new Map<RuntimeOp, Promise<void>>();

  /** The next call of `op` is in flight until the function returned is called; then it goes through. */
  holdNext(op: RuntimeOp): () => void {
    let release!: () => void;
    this.holds.set(op, new Promise<void>((resolve) => (release = resolve)));
    return release;
  }

  /** The next call of `op` fails with this engine message. */
  failNext(op: RuntimeOp, message: string): void {
    this.failures.set(op, message);
  }

  /** The engine stops answering; without live-restore its containers die with it (exit 143). */
  goAway(o: { liveRestore: boolean }): void {
    this.away = true;
    for (const c of this.containers.values()) {
      for (const r of c.readers) r.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
      c.readers.clear();
      if (!o.liveRestore && c.state === 'running') this.finish(c, { exitCode: 143, oomKilled: false, error: null }, false);
      const waiters = c.waiters.splice(0);
      for (const w of waiters) w();
    }
  }

  comeBack(): void {
    this.away = false;
  }

  /** The container writes to stdout (or stderr). */
  write(id: string, text: string, stream: 1 | 2 = 1): void {
    const c = this.get(id);
    const f = frame(stream, text);
    c.frames.push(f);
    for (const r of c.readers) r.write(f);
  }

  /** The container's process ends. */
  exit(id: string, exitCode: number, o: { oomKilled?: boolean } = {}): void {
    this.finish(this.get(id), { exitCode, oomKilled: o.oomKilled ?? false, error: null }, true);
  }

  /** The one container made for a job, once it exists. */
  async containerOf(jobId: string, timeoutMs = 2000): Promise<FakeContainer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = [...this.containers.values()].find((x) => x.spec.labels[MANAGED_LABELS.jobId] === jobId);
      if (c) return c;
      if (Date.now() > deadline) throw new Error(`no container for job ${jobId}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** A container left behind by an earlier Gantry (for re-adoption). */
  plant(spec: ContainerSpec, state: 'created' | 'running' | 'exited', output = ''): string {
    const id = `c${this.nextId++}`;
    const c: FakeContainer = {
      id,
      spec,
      state,
      created: Math.floor(Date.now() / 1000),
      exit: { exitCode: null, oomKilled: false, error: null },
      frames: output ? [frame(1, output)] : [],
      readers: new Set(),
      waiters: [],
    };
    this.containers.set(id, c);
    return id;
  }

  private finish(c: FakeContainer, exit: ContainerExit, endReaders: boolean): void {
    if (c.state === 'exited') return;
    c.state = 'exited';
    c.exit = exit;
    if (endReaders) {
      for (const r of c.readers) r.end();
      c.readers.clear();
    }
    for (const w of c.waiters.splice(0)) w();
  }

  private get(id: string): FakeContainer {
    const c = this.containers.get(id);
    if (!c) throw new RuntimeError('not_found', 'inspect', `No such container: ${id}`);
    return c;
  }

  private enter(op: RuntimeOp): void {
    this.calls.push(op);
    if (this.awayOn?.op === op) {
      const { ms } = this.awayOn;
      this.awayOn = null;
      this.goAway({ liveRestore: true });
      setTimeout(() => this.comeBack(), ms);
    }
    if (this.away) throw new RuntimeError('unreachable', op, 'connect ENOENT /var/run/docker.sock');
    const failure = this.failures.get(op);
    if (failure !== undefined) {
      this.failures.delete(op);
      throw new RuntimeError('other', op, failure);
    }
  }

  private reader(c: FakeContainer, history: boolean): Readable {
    const r = new PassThrough();
    if (history) for (const f of c.frames) r.write(f);
    if (c.state === 'exited') r.end();
    else c.readers.add(r);
    return r;
  }

  async ping(): Promise<void> {
    this.enter('ping');
  }

  async hasImage(image: string): Promise<boolean> {
    this.enter('image');
    return this.images.has(image.includes(':') ? image : `${image}:latest`);
  }

  async pullImage(image: string): Promise<void> {
    this.enter('pull');
    this.images.add(image.includes(':') ? image : `${image}:latest`);
  }

  async create(spec: ContainerSpec): Promise<string> {
    this.enter('create');
    const held = this.holds.get('create');
    this.holds.delete('create');
    await held;
    return this.plant(spec, 'created');
  }

  async attach(id: string): Promise<Readable> {
    this.enter('attach');
    return this.reader(this.get(id), false);
  }

  async start(id: string): Promise<void> {
    this.enter('start');
    const c = this.get(id);
    if (c.state === 'created') c.state = 'running';
  }

  async followLogs(id: string): Promise<Readable> {
    this.enter('logs');
    return this.reader(this.get(id), true);
  }

  async wait(id: string): Promise<ContainerExit> {
    this.enter('wait');
    const c = this.get(id);
    if (c.state !== 'exited') {
      await new Promise<void>((resolve) => c.waiters.push(resolve));
      if (this.away) throw new RuntimeError('unreachable', 'wait', 'socket hang up');
    }
    return c.exit;
  }

  async inspect(id: string): Promise<ContainerStatus | null> {
    this.enter('inspect');
    const c = this.containers.get(id);
    return c ? { running: c.state === 'running', exit: c.exit, finishedAt: null } : null;
  }

  /** A fake container runs no host process, so it has none to list. */
  async processes(): Promise<number[]> {
    this.enter('top');
    return [];
  }

  async stop(id: string): Promise<void> {
    this.enter('stop');
    const c = this.containers.get(id);
    if (c?.state === 'running') this.finish(c, { exitCode: this.stopExitCode, oomKilled: false, error: null }, true);
  }

  async remove(id: string): Promise<void> {
    this.enter('remove');
    this.containers.delete(id);
  }

  async listManaged(): Promise<ManagedContainer[]> {
    this.enter('list');
    return [...this.containers.values()].map((c) => ({
      id: c.id,
      names: [`/${c.spec.name}`],
      labels: c.spec.labels,
      state: c.state,
      created: c.created,
    }));
  }
}
