import type { Readable } from 'node:stream';

/**
 * The container engine, as Gantry uses it. Everything Gantry does with
 * containers goes through this interface; the one real implementation is
 * runtime/docker (dockerode), and tests drive the scheduler with a fake.
 *
 * Rules every implementation keeps:
 * - A failed call rejects with RuntimeError, whose `kind` says what kind of
 *   failure it was and whose message is the engine's own text.
 * - `stop` and `remove` of a container that is already stopped or gone succeed.
 */
export interface ContainerRuntime {
  ping(): Promise<void>;
  /** Whether the image is present locally. */
  hasImage(image: string): Promise<boolean>;
  /** Pulls the image; progress is reported at most about once a second. */
  pullImage(image: string, auth: RegistryCredentials | null, onProgress: (status: string, progress: string | null) => void): Promise<void>;
  /** Creates (does not start) a container; resolves its id. */
  create(spec: ContainerSpec): Promise<string>;
  /** The container's output from now on, multiplexed (8-byte frame headers); attach before start to miss nothing. */
  attach(id: string): Promise<Readable>;
  start(id: string): Promise<void>;
  /** The container's whole output from its log driver, then live until it stops, multiplexed. */
  followLogs(id: string): Promise<Readable>;
  /** Resolves once the container has stopped, with how it ended. */
  wait(id: string): Promise<ContainerExit>;
  /** SIGTERM, then SIGKILL after the grace period. */
  stop(id: string, graceSeconds: number): Promise<void>;
  /** Removes the container, stopping it first if need be. */
  remove(id: string): Promise<void>;
  /** Every container Gantry made on this engine (by its labels), running or not. */
  listManaged(): Promise<ManagedContainer[]>;
  /** How a container stands now; null when it does not exist. */
  inspect(id: string): Promise<ContainerStatus | null>;
  /**
   * The ids of the container's processes as the engine's host numbers them
   * (the ids nvidia-smi prints); empty when it is not running or is gone.
   */
  processes(id: string): Promise<number[]>;
}

export type RuntimeErrorKind =
  /** The engine cannot be reached (socket missing, connection refused or dropped). */
  | 'unreachable'
  | 'not_found'
  /** The engine refused the request as malformed (e.g. an image reference it does not accept). */
  | 'bad_request'
  | 'other';

export class RuntimeError extends Error {
  constructor(
    readonly kind: RuntimeErrorKind,
    /** The operation that failed, as counted in metrics. */
    readonly op: RuntimeOp,
    message: string,
  ) {
    super(message);
    this.name = 'RuntimeError';
  }
}

export function isUnreachable(err: unknown): boolean {
  return err instanceof RuntimeError && err.kind === 'unreachable';
}

export interface RegistryCredentials {
  username: string;
  password: string;
  serveraddress: string;
}

/** A bind or volume mount, already checked by the policy (sources resolved). */
export interface ContainerMount {
  type: 'bind' | 'volume';
  source: string;
  target: string;
  readOnly: boolean;
  /** `rprivate`: host mounts made under the source later are not seen by the container, nor its mounts by the host. */
  propagation?: 'rprivate';
}

/** A device request, for engines with a GPU runtime (`nvidia`) or CDI. */
export interface DeviceRequest {
  driver: 'nvidia' | 'cdi';
  ids: string[];
  capabilities?: string[][];
}

/**
 * Everything a job's container may be given. Gantry builds it from the job
 * spec after the policy allowed it; the runtime adds the fixed hardening
 * (no privileges, every capability dropped but the listed ones,
 * no-new-privileges, private IPC, an init, no restarts) and nothing else.
 * A field that is not here cannot reach the engine.
 */
export interface ContainerSpec {
  name: string;
  image: string;
  command: string[];
  entrypoint?: string[] | undefined;
  env: Record<string, string>;
  workdir?: string | undefined;
  user: string;
  /** A read-only root filesystem, with a writable tmpfs on /tmp. */
  readonlyRootfs: boolean;
  labels: Record<string, string>;
  /** `none` disables networking. */
  network: string;
  memoryBytes: number;
  /** 0 means no CPU limit. */
  nanoCpus: number;
  shmBytes: number;
  pidsLimit: number;
  capabilities: string[];
  mounts: ContainerMount[];
  /** Host device nodes passed through as they are (the `devices` GPU driver). */
  devices: string[];
  deviceRequests: DeviceRequest[];
  log: { driver: 'local' | 'json-file'; maxSizeMiB: number };
}

export interface ContainerExit {
  exitCode: number | null;
  oomKilled: boolean;
  /** The engine's own error for the container, if it recorded one. */
  error: string | null;
}

export interface ManagedContainer {
  id: string;
  names: string[];
  labels: Record<string, string>;
  state: 'created' | 'running' | 'paused' | 'restarting' | 'exited' | 'dead' | 'removing';
  /** When the container was created (epoch seconds). */
  created: number;
}

export interface ContainerStatus {
  running: boolean;
  exit: ContainerExit;
  /** When the container last stopped (ISO), if it has. */
  finishedAt: string | null;
}

/** Labels Gantry puts on every container it makes, so it can find them again after a restart. */
export const MANAGED_LABELS = {
  managed: 'dev.gantry.managed',
  jobId: 'dev.gantry.job-id',
  /** Which attempt of the job the container runs ("1" when absent: containers made before attempts existed). */
  attempt: 'dev.gantry.attempt',
  owner: 'dev.gantry.owner',
} as const;

/** The operations a runtime counts its failures by. */
export const RUNTIME_OPS = [
  'ping',
  'image',
  'pull',
  'create',
  'attach',
  'start',
  'logs',
  'wait',
  'inspect',
  'stop',
  'remove',
  'list',
  'top',
] as const;
export type RuntimeOp = (typeof RUNTIME_OPS)[number];
