import type Docker from 'dockerode';
import type { ContainerSpec } from '../runtime.js';

/**
 * The complete Docker definition of a job's container. Every field is set
 * here: the ContainerSpec's values (which Gantry built from a spec the
 * policy allowed) and the fixed hardening below. Nothing else reaches the
 * engine.
 */
export function createOptions(spec: ContainerSpec): Docker.ContainerCreateOptions {
  const hostConfig: Docker.HostConfig = {
    NetworkMode: spec.network,
    Privileged: false,
    CapDrop: ['ALL'],
    CapAdd: spec.capabilities,
    SecurityOpt: ['no-new-privileges:true'],
    PidsLimit: spec.pidsLimit,
    Memory: spec.memoryBytes,
    MemorySwap: spec.memoryBytes,
    NanoCpus: spec.nanoCpus,
    ShmSize: spec.shmBytes,
    IpcMode: 'private',
    PidMode: '',
    UTSMode: '',
    UsernsMode: '',
    ReadonlyRootfs: spec.readonlyRootfs,
    // Writable scratch space for a read-only root; the tmpfs counts against
    // the container's memory limit. Not noexec: JIT compilers (Triton,
    // torch.compile) load the code they write to /tmp.
    ...(spec.readonlyRootfs ? { Tmpfs: { '/tmp': 'rw,nosuid,nodev,mode=1777' } } : {}),
    // An init as PID 1 forwards SIGTERM, so cancel's grace period works for
    // images whose command does not handle signals itself.
    Init: true,
    AutoRemove: false,
    RestartPolicy: { Name: 'no' },
    LogConfig: {
      Type: spec.log.driver,
      Config: { 'max-size': `${spec.log.maxSizeMiB}m`, 'max-file': '1', ...(spec.log.driver === 'local' ? { compress: 'false' } : {}) },
    },
    Mounts: spec.mounts.map((m) => ({
      Type: m.type,
      Source: m.source,
      Target: m.target,
      ReadOnly: m.readOnly,
      ...(m.propagation ? { BindOptions: { Propagation: m.propagation } } : {}),
    })),
    Devices: spec.devices.map((p) => ({ PathOnHost: p, PathInContainer: p, CgroupPermissions: 'rwm' })),
    // Explicit ids, never Count: Docker's Count=N always means GPUs 0..N-1.
    DeviceRequests: spec.deviceRequests.map((r) => ({
      Driver: r.driver,
      Count: 0,
      DeviceIDs: r.ids,
      ...(r.capabilities ? { Capabilities: r.capabilities } : {}),
    })),
  };

  return {
    name: spec.name,
    Image: spec.image,
    Cmd: spec.command,
    ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
    User: spec.user,
    Labels: spec.labels,
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    NetworkDisabled: spec.network === 'none',
    HostConfig: hostConfig,
  };
}
