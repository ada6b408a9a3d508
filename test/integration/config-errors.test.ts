import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT, tempDir, testEnv } from '../helpers/gantry.js';

/** Runs `node --import tsx src/main.ts` with a test environment until it exits. */
function start(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...testEnv(tempDir(), env) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  // A start that does not fail would listen forever: give up after 30 s.
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    }),
  );
}

function writeFile(name: string, text: string): string {
  const file = path.join(tempDir(), name);
  fs.writeFileSync(file, text);
  return file;
}

const cases: { name: string; env: () => Record<string, string>; variable: string }[] = [
  {
    name: 'a tokens file with a bad entry',
    env: () => ({ GANTRY_TOKENS_FILE: writeFile('tokens.json', JSON.stringify([{ owner: 'x', scopes: ['root'], sha256: 'abc' }])) }),
    variable: 'GANTRY_TOKENS_FILE',
  },
  {
    name: 'a registry auth file without a password',
    env: () => ({ GANTRY_REGISTRY_AUTH_FILE: writeFile('auth.json', JSON.stringify({ 'r.example:5000': { username: 'u' } })) }),
    variable: 'GANTRY_REGISTRY_AUTH_FILE',
  },
  { name: 'a static GPU list with a bad entry', env: () => ({ GANTRY_GPUS: 'GPU-a:lots' }), variable: 'GANTRY_GPUS' },
  { name: 'a bad variable', env: () => ({ GANTRY_KEEP_CONTAINERS: 'maybe' }), variable: 'GANTRY_KEEP_CONTAINERS' },
];

for (const c of cases) {
  test(`${c.name}: exit 2 and one stderr line naming ${c.variable}, no stack trace`, async () => {
    const r = await start(c.env());
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`^gantry: invalid configuration: ${c.variable}: \\S`));
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  });
}

test('two bad variables: exit 2 and one line each', async () => {
  const r = await start({ GANTRY_PORT: 'eighty', GANTRY_PULL_POLICY: 'sometimes' });
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(
    r.stderr
      .trimEnd()
      .split('\n')
      .map((l) => /^gantry: invalid configuration: (GANTRY_\w+): /.exec(l)?.[1]),
    ['GANTRY_PORT', 'GANTRY_PULL_POLICY'],
  );
});
