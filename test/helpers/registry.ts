import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { docker, freePort, tempDir, TEST_IMAGE } from './gantry.js';

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
