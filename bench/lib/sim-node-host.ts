/**
 * A process hosting simulated fleet nodes (bench/lib/sim-node.ts), many per
 * process, so that their CPU is measured apart from the simulation's driver.
 * argv[2]: JSON { databaseUrl, root, names, files, startConcurrency }. Prints one
 * JSON line per node started ({ name, url }), then { ready: true }; on
 * SIGTERM closes every node (as a Gantry shutting down does) and exits.
 */
import pino from 'pino';
import { type SimNode, type SimNodeFiles, startSimNode } from './sim-node.js';
import { pool } from './util.js';

interface HostSpec {
  databaseUrl: string;
  root: string;
  names: string[];
  files: SimNodeFiles;
  startConcurrency: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as HostSpec;
const log = pino({ level: process.env.GANTRY_LOG_LEVEL ?? 'warn' }, pino.destination(2));
const nodes: SimNode[] = [];
let closing = false;

async function close(code: number): Promise<void> {
  if (closing) return;
  closing = true;
  await Promise.allSettled(nodes.map((n) => n.app.close()));
  process.exit(code);
}

process.once('SIGTERM', () => void close(0));
process.once('SIGINT', () => void close(0));

try {
  await pool(spec.names.length, spec.startConcurrency, async (i) => {
    const node = await startSimNode({ name: spec.names[i]!, databaseUrl: spec.databaseUrl, root: spec.root, files: spec.files, log });
    nodes.push(node);
    process.stdout.write(`${JSON.stringify({ name: node.name, url: node.url })}\n`);
  });
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
} catch (err) {
  process.stderr.write(`sim node host: ${(err as Error).stack ?? String(err)}\n`);
  await close(1);
}
