import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from './gantry.js';
import { freePort } from './postgres.js';

/** Where scripts/setup-host.sh --test installs the pinned Toxiproxy (TOXIPROXY_SERVER overrides it). */
const SERVER = process.env.TOXIPROXY_SERVER ?? '/usr/local/bin/toxiproxy-server';

/** One proxied link (to one node's database, say): faults are switched on and off over Toxiproxy's HTTP API. */
export interface FaultyLink {
  /** The upstream's URL with its host and port replaced by the proxy's. */
  url: string;
  /** Closes every connection through the link and refuses new ones (the proxy disabled). */
  cut(): Promise<void>;
  /** Data stops both ways while connections stay open (a timeout toxic of 0: held until healed). */
  freeze(): Promise<void>;
  /** Every answer from the upstream arrives `ms` later (a latency toxic downstream). */
  delay(ms: number): Promise<void>;
  /** No fault: the link enabled again (on the same port), every toxic removed. */
  heal(): Promise<void>;
  /** Removes the proxy. */
  close(): Promise<void>;
}

export interface Toxiproxy {
  /** A proxy named `name` in front of the host and port of `upstreamUrl` (a postgres:// URL, say), listening on a free loopback port. */
  link(name: string, upstreamUrl: string): Promise<FaultyLink>;
  /** Stops the server (every proxy with it). */
  close(): Promise<void>;
}

/**
 * Starts a Toxiproxy server on a free loopback port, in a temporary
 * directory; with a TestContext, it is stopped after the test.
 */
export async function startToxiproxy(t?: TestContext | null): Promise<Toxiproxy> {
  if (!fs.existsSync(SERVER)) throw new Error(`${SERVER} not found: run scripts/setup-host.sh --test (or set TOXIPROXY_SERVER)`);
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const proc: ChildProcess = spawn(SERVER, ['-host', '127.0.0.1', '-port', String(port)], {
    cwd: tempDir('toxiproxy-'),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  proc.stderr?.on('data', (b: Buffer) => {
    output = (output + b.toString()).slice(-4000);
  });
  const call = async (method: string, route: string, body?: unknown): Promise<unknown> => {
    const r = await fetch(`${api}${route}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`toxiproxy ${method} ${route}: ${r.status} ${text}`);
    return r.headers.get('content-type')?.includes('json') && text ? JSON.parse(text) : text;
  };
  for (let tries = 0; ; tries++) {
    try {
      await call('GET', '/version');
      break;
    } catch (err) {
      if (tries >= 100 || proc.exitCode !== null) throw new Error(`toxiproxy-server did not start: ${(err as Error).message}\n${output}`);
      await sleep(50);
    }
  }
  const close = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };
  t?.after(close);

  return {
    close,
    async link(name, upstreamUrl) {
      const upstream = new URL(upstreamUrl);
      const created = (await call('POST', '/proxies', {
        name,
        listen: '127.0.0.1:0',
        upstream: `${upstream.hostname}:${upstream.port}`,
        enabled: true,
      })) as { listen: string };
      const url = new URL(upstreamUrl);
      url.port = created.listen.split(':').pop()!;
      // A fixed port from now on, so that re-enabling the proxy listens where clients connect.
      await call('POST', `/proxies/${name}`, { listen: created.listen });
      const toxic = (type: string, stream: 'upstream' | 'downstream', attributes: Record<string, number>) =>
        call('POST', `/proxies/${name}/toxics`, { name: `${type}-${stream}`, type, stream, toxicity: 1, attributes });
      return {
        url: url.toString(),
        cut: async () => void (await call('POST', `/proxies/${name}`, { enabled: false })),
        async freeze() {
          await toxic('timeout', 'upstream', { timeout: 0 });
          await toxic('timeout', 'downstream', { timeout: 0 });
        },
        delay: async (ms) => void (await toxic('latency', 'downstream', { latency: ms, jitter: 0 })),
        async heal() {
          await call('POST', `/proxies/${name}`, { enabled: true });
          const toxics = (await call('GET', `/proxies/${name}/toxics`)) as { name: string }[];
          for (const x of toxics) await call('DELETE', `/proxies/${name}/toxics/${x.name}`);
        },
        close: async () => void (await call('DELETE', `/proxies/${name}`)),
      };
    },
  };
}
