/**
 * The driver's side of the simulated fleet: starts the processes that host
 * the nodes (bench/lib/sim-node-host.ts), many nodes each, so that the
 * nodes' CPU is measured apart from the driver's, and stops them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { procCpuSeconds, procKiB, ROOT } from './gantry.js';
import type { SimNodeFiles } from './sim-node.js';
import { within } from './util.js';

export interface Host {
  proc: ChildProcess;
  /** Each node's name and base URL. */
  urls: Map<string, string>;
}

const LOG_DIR = path.join(os.tmpdir(), 'gantry-fleet-scale-logs');

/** Starts a process hosting the named nodes; resolves once every one listens. Its stderr goes to a file named by `tag`. */
export async function startHost(databaseUrl: string, root: string, names: string[], files: SimNodeFiles, tag: string): Promise<Host> {
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const logFile = path.join(LOG_DIR, `${tag}.log`);
  const err = fs.openSync(logFile, 'w');
  const spec = { databaseUrl, root, names, files, startConcurrency: 4 };
  const proc = spawn(
    process.execPath,
    ['--max-old-space-size=8192', '--import', 'tsx', path.join(ROOT, 'bench/lib/sim-node-host.ts'), JSON.stringify(spec)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', err] },
  );
  fs.closeSync(err);
  const urls = new Map<string, string>();
  const ready = new Promise<void>((resolve, reject) => {
    let buf = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      buf += d;
      for (let cut = buf.indexOf('\n'); cut !== -1; cut = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, cut)) as { name?: string; url?: string; ready?: boolean };
        buf = buf.slice(cut + 1);
        if (msg.name && msg.url) urls.set(msg.name, msg.url);
        if (msg.ready) resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`node host ${tag} exited (${code}); see ${logFile}`)));
  });
  await within(ready, 600_000, `node host ${tag}`);
  return { proc, urls };
}

/** SIGTERM (every node closes as a Gantry shutting down does), SIGKILL after a minute. */
export async function stopHost(h: Host): Promise<void> {
  if (h.proc.exitCode !== null || h.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => h.proc.once('exit', resolve));
  h.proc.kill('SIGTERM');
  await within(exited, 60_000, 'node host exit').catch(() => h.proc.kill('SIGKILL'));
}

/** CPU seconds the hosts have used so far, all nodes together. */
export const hostsCpuSeconds = (hosts: Host[]) => hosts.reduce((s, h) => s + (h.proc.pid ? procCpuSeconds(h.proc.pid) : 0), 0);

/** Resident memory of the hosts now, MB. */
export const hostsRssMB = (hosts: Host[]) => hosts.reduce((s, h) => s + (h.proc.pid ? procKiB(h.proc.pid, 'VmRSS') : 0), 0) / 1024;
