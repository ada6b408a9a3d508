import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { docker, freePort, TEST_IMAGE, tempDir } from './gantry.js';

export interface Registry {
  host: string;
  stop(): Promise<void>;
}

/**
 * A real registry (Debian's docker-registry, distribution 2.8) on loopback,
 * optionally behind htpasswd. Docker trusts 127.0.0.0/8 registries without TLS.
 */
export async function startRegistry(auth?: { user: string; password: string }): Promise<Registry> {
  const dir = tempDir('gantry-registry-');
  const port = await freePort();
  let authBlock = '';
  if (auth) {
    const htpasswd = path.join(dir, 'htpasswd');
    execFileSync('htpasswd', ['-Bbc', htpasswd, auth.user, auth.password], { stdio: 'ignore' });
    authBlock = `auth:\n  htpasswd:\n    realm: gantry-test\n    path: ${htpasswd}\n`;
  }
  const config = path.join(dir, 'config.yml');
  fs.writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n${authBlock}`,
  );
  const proc: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const r = await request(`http://${host}/v2/`);
      await r.body.text();
      break;
    } catch {
      if (i > 100) throw new Error('registry did not start');
      await sleep(100);
    }
  }
  return {
    host,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

/** Tags the local test image into the registry and pushes it, then drops the local tag. */
export async function pushTestImage(reg: Registry, repo: string, auth?: { user: string; password: string }): Promise<string> {
  const ref = `${reg.host}/${repo}`;
  await docker.getImage(TEST_IMAGE).tag({ repo: `${reg.host}/${repo.split(':')[0]}`, tag: repo.split(':')[1] ?? 'latest' });
  const image = docker.getImage(ref);
  // The push endpoint insists on an X-Registry-Auth header, even an anonymous one.
  const stream = await image.push({ authconfig: { username: auth?.user ?? '', password: auth?.password ?? '', serveraddress: reg.host } });
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) =>
      err ? reject(err) : out.find((o) => o.error) ? reject(new Error(out.find((o) => o.error)!.error)) : resolve(),
    ),
  );
  await image.remove();
  return ref;
}

export interface StallingProxy {
  host: string;
  /** Resolves once Docker has asked for a manifest (the pull has begun). */
  stalled: Promise<void>;
  /** Lets the held manifest requests (and all later ones) through. */
  release(): void;
  stop(): Promise<void>;
}

/**
 * A loopback proxy in front of a registry that holds every manifest request
 * until released: a pull that lasts exactly as long as a test needs.
 */
export async function startStallingProxy(reg: Registry): Promise<StallingProxy> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let stalled!: () => void;
  const stalledP = new Promise<void>((r) => (stalled = r));
  const [regHost, regPort] = reg.host.split(':') as [string, string];
  const server = http.createServer((req, res) => {
    const forward = () => {
      const upstream = http.request(
        { host: regHost, port: Number(regPort), method: req.method, path: req.url, headers: { ...req.headers, host: reg.host } },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (req.url?.includes('/manifests/')) {
      stalled();
      void released.then(forward);
    } else forward();
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${port}`,
    stalled: stalledP,
    release,
    stop: () =>
      new Promise<void>((r) => {
        release();
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
