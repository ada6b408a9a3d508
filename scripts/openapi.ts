/**
 * Writes or checks the committed OpenAPI document, generated from the route
 * schemas: it builds the real app (every route, as main.ts would) without a
 * Docker engine and without listening, and serialises `app.swagger()`.
 *
 *   npm run openapi          write openapi/openapi.json
 *   npm run openapi:check    exit 1 when the committed file differs from the code
 *
 * Options: --check, --file <path> (default openapi/openapi.json).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import pino from 'pino';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';

const ROOT = path.resolve(import.meta.dirname, '..');
export const DOCUMENT_PATH = path.join(ROOT, 'openapi', 'openapi.json');

/** The document as the code describes it, serialised as committed. */
export async function generateOpenapi(): Promise<string> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-openapi-'));
  try {
    // Fixed settings, so the document does not depend on who runs this: every
    // optional route switched on, no GPUs, no Docker call at start.
    const config = loadConfig({
      GANTRY_DATA_DIR: dataDir,
      GANTRY_ADMIN_TOKEN: 'openapi-generation-token',
      GANTRY_GPUS: 'none',
      GANTRY_LOG_LEVEL: 'silent',
      GANTRY_METRICS: 'token',
    });
    const app = await buildApp(config, { logger: pino({ level: 'silent' }), skipScheduler: true, announceToken: () => {} });
    try {
      return `${JSON.stringify(app.swagger(), null, 2)}\n`;
    } finally {
      await app.close();
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Paths (JSON-pointer-like) where two documents differ, for a readable failure. */
export function differences(a: unknown, b: unknown, at = '', out: string[] = [], max = 20): string[] {
  if (out.length >= max || isDeepStrictEqual(a, b)) return out;
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
  if (isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!(k in b)) out.push(`${at}/${k}: only in the committed file`);
      else if (!(k in a)) out.push(`${at}/${k}: only in the code`);
      else differences(a[k], b[k], `${at}/${k}`, out, max);
      if (out.length >= max) break;
    }
    // Same content, another key order.
    if (out.length === 0) out.push(`${at || '/'}: key order differs`);
  } else {
    out.push(`${at || '/'}: committed ${JSON.stringify(a)?.slice(0, 80)} ≠ code ${JSON.stringify(b)?.slice(0, 80)}`);
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const check = argv.includes('--check');
  const fileArg = argv.indexOf('--file');
  const file = fileArg >= 0 && argv[fileArg + 1] ? path.resolve(argv[fileArg + 1]!) : DOCUMENT_PATH;
  const generated = await generateOpenapi();
  const rel = path.relative(process.cwd(), file) || file;
  if (!check) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const before = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    fs.writeFileSync(file, generated);
    process.stdout.write(`${before === generated ? 'unchanged' : 'wrote'} ${rel}\n`);
    return 0;
  }
  if (!fs.existsSync(file)) {
    process.stderr.write(`openapi: ${rel} is missing; run \`npm run openapi\` and commit it\n`);
    return 1;
  }
  const committed = fs.readFileSync(file, 'utf8');
  if (committed === generated) {
    process.stdout.write(`openapi: ${rel} matches the code\n`);
    return 0;
  }
  let where: string[];
  try {
    where = differences(JSON.parse(committed), JSON.parse(generated));
  } catch {
    where = ['the committed file is not valid JSON'];
  }
  if (where.length === 0) where = ['formatting only'];
  process.stderr.write(
    `openapi: ${rel} differs from the document the code generates (run \`npm run openapi\` and commit it):\n` +
      where.map((w) => `  ${w}\n`).join(''),
  );
  return 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`openapi: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(2);
    },
  );
}
