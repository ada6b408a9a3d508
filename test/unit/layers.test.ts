import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

// The layer rules (.dependency-cruiser.cjs) must be able to fail: a tree with
// one import that runs back up is refused, naming the rule; the same tree
// without it passes.
const ROOT = path.resolve(import.meta.dirname, '..', '..');

function cruise(files: Record<string, string>): { status: number | null; out: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-layers-'));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  fs.copyFileSync(path.join(ROOT, '.dependency-cruiser.cjs'), path.join(dir, '.dependency-cruiser.cjs'));
  fs.copyFileSync(path.join(ROOT, 'tsconfig.json'), path.join(dir, 'tsconfig.json'));
  const r = spawnSync(path.join(ROOT, 'node_modules/.bin/depcruise'), ['src', '--config', '.dependency-cruiser.cjs'], {
    cwd: dir,
    encoding: 'utf8',
  });
  fs.rmSync(dir, { recursive: true, force: true });
  return { status: r.status, out: r.stdout + r.stderr };
}

const base = {
  'src/model/job.ts': 'export const x = 1;\n',
  'src/store/store.ts': "import { x } from '../model/job.js';\nexport const y = x;\n",
  'src/store/sqlite/jobs.ts': "import { y } from '../store.js';\nexport const z = y;\n",
};

test('an import that runs back up (the domain reaching into SQLite) fails the lint, naming the rule', () => {
  const ok = cruise({ ...base, 'src/jobs/service.ts': "import { y } from '../store/store.js';\nexport const s = y;\n" });
  assert.equal(ok.status, 0, ok.out);
  const bad = cruise({ ...base, 'src/jobs/service.ts': "import { z } from '../store/sqlite/jobs.js';\nexport const s = z;\n" });
  assert.notEqual(bad.status, 0);
  assert.match(bad.out, /error jobs: src\/jobs\/service\.ts → src\/store\/sqlite\/jobs\.ts/);
});

test('the model imports no other layer, and no cycle passes', () => {
  const up = cruise({ ...base, 'src/model/job.ts': "import { y } from '../store/store.js';\nexport const x = 1;\nexport const w = y;\n" });
  assert.notEqual(up.status, 0);
  assert.match(up.out, /no-circular|error model:/);
});
