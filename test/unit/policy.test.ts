import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';
import { gpuInjection } from '../../src/gpu/inject.js';
import { checkPolicy, imageAllowed } from '../../src/jobs/policy.js';
import { resolveRunSettings } from '../../src/jobs/run-settings.js';
import { JobSpecSchema } from '../../src/model/job.js';
import { containerSpec } from '../../src/runner/container-spec.js';
import { createOptions } from '../../src/runtime/docker/create-options.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-policy-'));
const allowed = path.join(root, 'data');
const outside = path.join(root, 'secret');
fs.mkdirSync(path.join(allowed, 'in'), { recursive: true });
fs.mkdirSync(outside);
fs.symlinkSync(outside, path.join(allowed, 'escape'));
const fakeSock = path.join(root, 'run', 'docker.sock');
fs.mkdirSync(path.dirname(fakeSock));
fs.writeFileSync(fakeSock, '');

const config = loadConfig({
  GANTRY_IMAGE_ALLOWLIST: 'local/*,registry.example.com/ml/*',
  GANTRY_MOUNT_ALLOWLIST: `${allowed},${root}/run,models`,
  GANTRY_NETWORKS: 'none,jobs-net,host',
  GANTRY_DOCKER_SOCKET: fakeSock,
});

const spec = (extra: Record<string, unknown> = {}) => JobSpecSchema.parse({ image: 'local/busybox:latest', command: ['true'], ...extra });
const fields = (extra: Record<string, unknown>) =>
  checkPolicy(spec(extra), 'alice', config.policy, config.dockerSocket).errors.map((e) => `body.${e.path}`);

test('image allowlist: globs match tagged and untagged references, nothing else', () => {
  assert.ok(imageAllowed('local/busybox', ['local/*']));
  assert.ok(imageAllowed('local/busybox:1.36', ['local/*']));
  assert.ok(imageAllowed('registry.example.com/ml/model@sha256:abc', ['registry.example.com/ml/*']));
  assert.ok(!imageAllowed('registry.example.com/ml/deep/model', ['registry.example.com/ml/*']));
  assert.ok(!imageAllowed('docker.io/local/busybox', ['local/*']));
  assert.ok(!imageAllowed('evil/local/busybox', ['local/*']));
  assert.deepEqual(fields({ image: 'ubuntu:22.04' }), ['body.image']);
});

test('networks: only the configured ones, and never host even if listed', () => {
  assert.deepEqual(fields({ network: 'jobs-net' }), []);
  assert.deepEqual(fields({ network: 'host' }), ['body.network']);
  assert.deepEqual(fields({ network: 'container:abc' }), ['body.network']);
  assert.deepEqual(fields({ network: 'bridge' }), ['body.network']);
});

test('client NVIDIA_* and GANTRY_* variables are refused', () => {
  assert.deepEqual(fields({ env: { NVIDIA_VISIBLE_DEVICES: 'all', nvidia_driver_capabilities: 'all', OK: '1' } }), [
    'body.env.NVIDIA_VISIBLE_DEVICES',
    'body.env.nvidia_driver_capabilities',
  ]);
  assert.deepEqual(fields({ env: { GANTRY_GPU_MEMORY_MIB: '1' } }), ['body.env.GANTRY_GPU_MEMORY_MIB']);
});

test('reserved label keys are refused', () => {
  assert.deepEqual(fields({ labels: { 'dev.gantry.job-id': 'x' } }), ['body.labels.dev.gantry.job-id']);
});

test('mounts: inside the allowlist is fine, resolved on the host', () => {
  const d = checkPolicy(
    spec({ mounts: [{ source: `${allowed}/in/../in`, target: '/data' }] }),
    'alice',
    config.policy,
    config.dockerSocket,
  );
  assert.deepEqual(d.errors, []);
  assert.equal(d.mounts[0]!.source, fs.realpathSync(path.join(allowed, 'in')));
  assert.equal(d.mounts[0]!.readOnly, true);
});

test('mounts: symlink and .. escapes, the Docker socket, system paths and unknown volumes are refused', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ source: path.join(allowed, 'escape'), target: '/x' }, 'outside'],
    [{ source: `${allowed}/../secret`, target: '/x' }, 'outside'],
    [{ source: fakeSock, target: '/var/run/docker.sock' }, 'Docker socket'],
    [{ source: path.dirname(fakeSock), target: '/x' }, 'Docker socket'],
    [{ source: '/', target: '/host' }, 'never'],
    [{ source: '/proc', target: '/x' }, 'never'],
    [{ source: '/sys/kernel', target: '/x' }, 'never'],
    [{ source: '/does/not/exist', target: '/x' }, 'does not exist'],
    [{ source: 'other-volume', target: '/x' }, 'not in GANTRY_MOUNT_ALLOWLIST'],
    [{ source: `${allowed}/in`, target: '/proc/x' }, 'may not mount over'],
  ];
  for (const [mount, why] of cases) {
    const d = checkPolicy(spec({ mounts: [mount] }), 'alice', config.policy, config.dockerSocket);
    assert.equal(d.errors.length, 1, `expected a refusal for ${JSON.stringify(mount)}`);
    assert.match(d.errors[0]!.message, new RegExp(why), JSON.stringify(mount));
    assert.deepEqual(d.mounts, []);
  }
});

test("Gantry's own files are never mounted: the data dir, a folder in it or holding it, the secrets, run and notice folders, the TLS key, the tokens", () => {
  // Everything under one allowlisted prefix, as an operator who allowlists /srv and keeps Gantry there has it.
  const srv = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-own-'));
  const own = { data: `${srv}/gantry`, secrets: `${srv}/secrets`, run: `${srv}/run/secrets`, notices: `${srv}/run/notices` };
  for (const dir of [...Object.values(own), `${srv}/gantry/logs`, `${srv}/models`]) fs.mkdirSync(dir, { recursive: true });
  for (const file of ['tls.key', 'tokens.json']) fs.writeFileSync(path.join(srv, file), '');
  fs.symlinkSync(own.data, `${srv}/models/data-link`);
  const c = loadConfig({
    GANTRY_MOUNT_ALLOWLIST: srv,
    GANTRY_DATA_DIR: own.data,
    GANTRY_SECRETS_DIR: own.secrets,
    GANTRY_SECRETS_RUN_DIR: own.run,
    GANTRY_NOTICE_DIR: own.notices,
    GANTRY_TLS_CERT: `${srv}/tls.crt`,
    GANTRY_TLS_KEY: `${srv}/tls.key`,
    GANTRY_TOKENS_FILE: `${srv}/tokens.json`,
  });
  const refused = (source: string) => {
    const d = checkPolicy(spec({ mounts: [{ source, target: '/x' }] }), 'alice', c.policy, c.dockerSocket);
    return d.errors.map((e) => e.message).join();
  };
  assert.match(refused(own.data), /would expose Gantry's own GANTRY_DATA_DIR/);
  assert.match(refused(`${srv}/gantry/logs`), /GANTRY_DATA_DIR/, 'a folder inside it');
  assert.match(refused(`${srv}/models/data-link`), /GANTRY_DATA_DIR/, 'a link to it');
  assert.match(refused(srv), /would expose Gantry's own/, 'a folder holding it');
  assert.match(refused(own.secrets), /GANTRY_SECRETS_DIR/);
  assert.match(refused(own.run), /GANTRY_SECRETS_RUN_DIR/);
  assert.match(refused(`${srv}/run`), /GANTRY_SECRETS_RUN_DIR|GANTRY_NOTICE_DIR/);
  assert.match(refused(`${srv}/tls.key`), /GANTRY_TLS_KEY/);
  assert.match(refused(`${srv}/tokens.json`), /GANTRY_TOKENS_FILE/);
  assert.equal(refused(`${srv}/models`), '', 'the rest of the prefix may be mounted');
});

test("an allowlist entry inside Gantry's own paths, or a default user of Gantry's own uid, stops the start", () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-own-data-'));
  assert.throws(
    () => loadConfig({ GANTRY_DATA_DIR: data, GANTRY_MOUNT_ALLOWLIST: `${data}/logs,models` }),
    (err: ConfigError) => err.problems.some((p) => p.startsWith(`GANTRY_MOUNT_ALLOWLIST: "${data}/logs" is within GANTRY_DATA_DIR`)),
  );
  assert.throws(() => loadConfig({ GANTRY_DATA_DIR: data, GANTRY_MOUNT_ALLOWLIST: data }), ConfigError);
  const uid = process.getuid!();
  if (uid !== 0) {
    assert.throws(() => loadConfig({ GANTRY_DEFAULT_USER: `${uid}:${uid}` }), /GANTRY_DEFAULT_USER: uid \d+ is the uid Gantry runs as/);
  }
});

test("a job may not run as Gantry's own uid, which owns its 0700 folders and 0600 files", () => {
  const policy = { ...config.policy, ownUid: 1234 };
  const d = checkPolicy(spec({ user: '1234:1234' }), 'alice', policy, config.dockerSocket);
  assert.deepEqual(
    d.errors.map((e) => [e.path, e.message]),
    [['user', "uid 1234 is the uid Gantry runs as, which owns Gantry's own files: pick another"]],
  );
  assert.deepEqual(checkPolicy(spec({ user: '1235:1234' }), 'alice', policy, config.dockerSocket).errors, []);
});

test("mount targets and secret files: never in or over Gantry's /run/gantry, never one inside another (refused at submit, not failing at start)", () => {
  const at = (mounts: { target: string; readOnly?: boolean }[], secrets: Record<string, unknown>[] = []) =>
    checkPolicy(
      spec({ mounts: mounts.map((m) => ({ source: `${allowed}/in`, ...m })), secrets }),
      'alice',
      config.policy,
      config.dockerSocket,
    ).errors.map((e) => `${e.path}: ${e.message}`);
  assert.match(at([{ target: '/run/gantry/x' }]).join(), /^mounts\.0\.target: .*where Gantry mounts its own folder/);
  assert.match(
    at([{ target: '/run' }]).join(),
    /mounts\.0\.target: "\/run" would cover/,
    'a writable mount at /run would have runc make gantry/ on the host',
  );
  assert.match(at([{ target: '/run', readOnly: true }]).join(), /mounts\.0\.target/);
  assert.match(at([], [{ name: 'hf', file: '/run/gantry/token' }]).join(), /^secrets\.0\.file: .*where Gantry mounts its own folder/);
  assert.match(at([{ target: '/data' }, { target: '/data/sub' }]).join(), /mounts\.1\.target: "\/data\/sub" and "\/data" are nested/);
  assert.match(at([{ target: '/data/sub' }, { target: '/data' }]).join(), /mounts\.1\.target: .*nested/, 'in either order');
  assert.match(at([{ target: '/data' }], [{ name: 'hf', file: '/data/token' }]).join(), /secrets\.0\.file: .*nested/);
  assert.deepEqual(
    at([{ target: '/data' }, { target: '/data2' }, { target: '/run/other' }], [{ name: 'hf', file: '/run/secrets/hf' }]),
    [],
  );
});

test('named volumes in the allowlist are accepted', () => {
  const d = checkPolicy(
    spec({ mounts: [{ source: 'models', target: '/models', readOnly: true }] }),
    'alice',
    config.policy,
    config.dockerSocket,
  );
  assert.deepEqual(d.errors, []);
  assert.equal(d.mounts[0]!.type, 'volume');
});

test('resources and timeouts above the operator maximum are refused', () => {
  assert.deepEqual(fields({ resources: { memoryMiB: 10_000_000 } }), ['body.resources.memoryMiB']);
  assert.deepEqual(fields({ timeoutSeconds: 10 ** 9 }), ['body.timeoutSeconds']);
});

test('a stop grace above GANTRY_MAX_STOP_GRACE_SECONDS is refused; without it the maximum is GANTRY_STOP_GRACE_SECONDS', () => {
  assert.equal(config.policy.maxStopGraceSeconds, config.stopGraceSeconds);
  assert.deepEqual(fields({ stopGraceSeconds: config.stopGraceSeconds }), []);
  assert.deepEqual(fields({ stopGraceSeconds: config.stopGraceSeconds + 1 }), ['body.stopGraceSeconds']);
  const wider = loadConfig({ GANTRY_DOCKER_SOCKET: fakeSock, GANTRY_MAX_STOP_GRACE_SECONDS: '120' });
  const check = (s: number) => checkPolicy(spec({ stopGraceSeconds: s }), 'alice', wider.policy, wider.dockerSocket).errors;
  assert.deepEqual(check(120), []);
  assert.deepEqual(
    check(121).map((e) => e.path),
    ['stopGraceSeconds'],
  );
});

test('the spec schema refuses every field that would widen the container', () => {
  for (const key of ['privileged', 'capAdd', 'CapAdd', 'devices', 'HostConfig', 'pidMode', 'ipcMode', 'securityOpt', 'runtime']) {
    const r = JobSpecSchema.safeParse({ image: 'local/busybox', command: ['true'], [key]: true });
    assert.equal(r.success, false, key);
  }
  assert.equal(JobSpecSchema.safeParse({ image: 'local/busybox', command: ['true'], resources: { privileged: true } }).success, false);
});

test('container options: hardened by default, nothing taken from the client but checked values', () => {
  const s = spec({ env: { A: '1' }, privateEnv: { KEY: 'pk-123456' }, labels: { team: 'ml' }, resources: { cpus: 1.5 } });
  const opts = createOptions(
    containerSpec(
      {
        jobId: 'j1',
        attempt: 1,
        owner: 'alice',
        spec: s,
        settings: resolveRunSettings(s, config),
        mounts: [],
        runEnv: {},
        gpu: gpuInjection(config.gpus, [], null),
      },
      config,
    ),
  );
  const hc = opts.HostConfig!;
  assert.equal(hc.Privileged, false);
  assert.deepEqual(hc.CapDrop, ['ALL']);
  assert.deepEqual(hc.CapAdd, []);
  assert.deepEqual(hc.SecurityOpt, ['no-new-privileges:true']);
  assert.equal(hc.NetworkMode, 'none');
  assert.equal(hc.PidsLimit, config.policy.pidsLimit);
  assert.equal(hc.Memory, config.policy.defaultMemoryMiB * 1024 * 1024);
  assert.equal(hc.MemorySwap, hc.Memory);
  assert.equal(hc.NanoCpus, 1.5e9);
  assert.equal(hc.IpcMode, 'private');
  assert.deepEqual(hc.Devices, []);
  assert.deepEqual(hc.DeviceRequests, []);
  assert.ok(opts.Env!.includes('NVIDIA_VISIBLE_DEVICES=void'));
  assert.ok(opts.Env!.includes('A=1'));
  assert.ok(opts.Env!.includes('KEY=pk-123456'), 'a private variable is set like env');
  assert.equal(opts.Labels!['dev.gantry.job-id'], 'j1');
  assert.equal(opts.Labels!['dev.gantry.owner'], 'alice');
  assert.equal(opts.Labels!['dev.gantry.managed'], 'true');
  assert.equal(opts.Labels!.team, 'ml');
  assert.equal(opts.name, 'gantry-j1');
  assert.equal(opts.User, '65532:65532', 'a spec without a user runs as GANTRY_DEFAULT_USER, never as the image user');
  assert.equal(hc.ReadonlyRootfs, false);
  assert.equal(hc.Tmpfs, undefined);
});

test('who a job runs as: a non-zero numeric uid:gid, unless the owner may run as root', () => {
  assert.deepEqual(fields({ user: '1000:1000' }), []);
  for (const user of ['0', '0:0', '1000:0', '0:1000', '00:1000', 'root', 'nobody', '1000']) {
    assert.deepEqual(fields({ user }), ['body.user'], user);
  }
  const rootFor = (owners: string) => loadConfig({ GANTRY_DOCKER_SOCKET: fakeSock, GANTRY_ALLOW_ROOT_OWNERS: owners }).policy;
  for (const user of ['0', 'root', '1000']) {
    assert.deepEqual(checkPolicy(spec({ user }), 'alice', rootFor('alice,ops'), fakeSock).errors, [], user);
    assert.deepEqual(checkPolicy(spec({ user }), 'mallory', rootFor('*'), fakeSock).errors, [], user);
    assert.equal(checkPolicy(spec({ user }), 'bob', rootFor('alice'), fakeSock).errors.length, 1, user);
  }
  const message = checkPolicy(spec({ user: '0' }), 'bob', config.policy, fakeSock).errors[0]!.message;
  assert.match(message, /GANTRY_ALLOW_ROOT_OWNERS/, 'the refusal names the variable that would allow it');
});

test('GANTRY_DEFAULT_USER of root needs GANTRY_ALLOW_ROOT_OWNERS=*; a read-only root gets a /tmp tmpfs', () => {
  assert.throws(() => loadConfig({ GANTRY_DEFAULT_USER: '0:0' }), /GANTRY_DEFAULT_USER: uid or gid 0 needs GANTRY_ALLOW_ROOT_OWNERS=\*/);
  assert.throws(() => loadConfig({ GANTRY_DEFAULT_USER: 'app' }), /GANTRY_DEFAULT_USER: must be a numeric "uid:gid"/);
  assert.equal(loadConfig({ GANTRY_DEFAULT_USER: '0:0', GANTRY_ALLOW_ROOT_OWNERS: '*' }).policy.defaultUser, '0:0');
  const ro = loadConfig({ GANTRY_READONLY_ROOTFS: 'true', GANTRY_DEFAULT_USER: '1000:1000' });
  const opts = createOptions(
    containerSpec(
      {
        jobId: 'j',
        attempt: 1,
        owner: 'o',
        spec: spec({}),
        settings: resolveRunSettings(spec({}), ro),
        mounts: [],
        runEnv: { TOKEN: 'v' },
        gpu: gpuInjection(ro.gpus, [], null),
      },
      ro,
    ),
  );
  assert.equal(opts.HostConfig!.ReadonlyRootfs, true);
  assert.deepEqual(opts.HostConfig!.Tmpfs, { '/tmp': 'rw,nosuid,nodev,mode=1777' });
  assert.equal(opts.User, '1000:1000');
  assert.ok(opts.Env!.includes('TOKEN=v'), 'secret env reaches the container');
});

test('secret references: reserved or doubled variables and misplaced files are refused by field', () => {
  assert.deepEqual(
    fields({
      secrets: [
        { name: 'a', env: 'TOKEN' },
        { name: 'b', file: '/run/secrets/b' },
      ],
    }),
    [],
  );
  assert.deepEqual(fields({ env: { TOKEN: 'x' }, secrets: [{ name: 'a', env: 'TOKEN' }] }), ['body.secrets.0.env']);
  assert.deepEqual(
    fields({
      secrets: [
        { name: 'a', env: 'T' },
        { name: 'b', env: 'T' },
      ],
    }),
    ['body.secrets.1.env'],
  );
  assert.deepEqual(
    fields({
      secrets: [
        { name: 'a', env: 'GANTRY_X' },
        { name: 'b', env: 'NVIDIA_VISIBLE_DEVICES' },
      ],
    }),
    ['body.secrets.0.env', 'body.secrets.1.env'],
  );
  assert.deepEqual(
    fields({
      secrets: [
        { name: 'a', file: '/proc/x' },
        { name: 'b', file: '/' },
      ],
    }),
    ['body.secrets.0.file', 'body.secrets.1.file'],
  );
  assert.deepEqual(
    fields({
      mounts: [{ source: 'models', target: '/models' }],
      secrets: [
        { name: 'a', file: '/models/key' },
        { name: 'b', file: '/s/k' },
        { name: 'c', file: '/s/k' },
      ],
    }),
    ['body.secrets.0.file', 'body.secrets.2.file'],
  );
  for (const bad of [
    { name: 'a' },
    { name: 'a', env: 'A', file: '/a' },
    { name: '../a', env: 'A' },
    { name: '.owners.json', env: 'A' },
    { name: 'a', file: 'rel' },
  ]) {
    assert.equal(
      JobSpecSchema.safeParse({ image: 'local/busybox', command: ['true'], secrets: [bad] }).success,
      false,
      JSON.stringify(bad),
    );
  }
});

test("image references follow Docker's grammar", async () => {
  const { IMAGE_REFERENCE } = await import('../../src/model/job.js');
  for (const ok of [
    'local/busybox',
    'local/busybox:latest',
    '127.0.0.1:5000/ml/model:v1.2',
    'registry.example.com/ml/deep/model',
    `x/y@sha256:${'a'.repeat(64)}`,
    'a__b/c-d.e:1_0',
  ]) {
    assert.ok(IMAGE_REFERENCE.test(ok), ok);
  }
  for (const bad of ['b@m', 'u-:latest', 'Local/Busybox', 'x//y', '-x/y', 'x/y:', 'x/y:-tag', 'x y', 'x/y@sha256:zz']) {
    assert.ok(!IMAGE_REFERENCE.test(bad), bad);
  }
});
