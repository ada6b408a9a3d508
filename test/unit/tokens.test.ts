import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { generateToken, hashToken, loadTokens } from '../../src/auth/tokens.js';
import { ConfigError } from '../../src/config.js';

const memorySettings = () => {
  const m = new Map<string, string>();
  return { get: async (k: string) => m.get(k), set: async (k: string, v: string) => void m.set(k, v), m };
};

test('tokens file entries authenticate with their owner and scopes; unknown tokens do not', async () => {
  const tok = generateToken();
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tok-')), 'tokens.json');
  fs.writeFileSync(file, JSON.stringify([{ owner: 'airflow', scopes: ['submit', 'read'], sha256: hashToken(tok) }]));
  const store = await loadTokens({
    adminToken: undefined,
    tokensFile: file,
    settings: memorySettings(),
    announce: () => assert.fail('no announce'),
  });
  const p = store.verify(tok);
  assert.equal(p?.owner, 'airflow');
  assert.equal(p?.isAdmin, false);
  assert.ok(p?.scopes.has('submit'));
  assert.equal(store.verify(`${tok}x`), undefined);
  assert.equal(store.verify(''), undefined);
});

test('with no token configured, one admin token is generated, announced once, and only its hash kept', async () => {
  const settings = memorySettings();
  const shown: string[] = [];
  const a = await loadTokens({ adminToken: undefined, tokensFile: undefined, settings, announce: (t) => shown.push(t) });
  const b = await loadTokens({ adminToken: undefined, tokensFile: undefined, settings, announce: (t) => shown.push(t) });
  assert.equal(shown.length, 1);
  assert.ok(a.verify(shown[0]!)?.isAdmin);
  assert.ok(b.verify(shown[0]!)?.isAdmin, 'the hash survives a restart');
  assert.ok(![...settings.m.values()].includes(shown[0]!), 'the token itself is not stored');
});

test('a malformed, unreadable or non-JSON tokens file is a ConfigError naming the variable and what is wrong', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tok-'));
  const write = (name: string, text: string) => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const cases: [string, RegExp][] = [
    [write('tokens.json', JSON.stringify([{ owner: 'x', scopes: ['root'], sha256: 'abc' }])), /\[0\.scopes\.0\].*\[0\.sha256\]/],
    [write('object.json', JSON.stringify({ owner: 'x' })), /expected array/],
    [write('broken.json', '[{"owner": '), /broken\.json is not JSON: /],
    [path.join(dir, 'missing.json'), /cannot read .*missing\.json: ENOENT/],
  ];
  for (const [file, why] of cases) {
    await assert.rejects(
      loadTokens({ adminToken: undefined, tokensFile: file, settings: memorySettings(), announce: () => undefined }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.problems.length, 1);
        assert.match(e.problems[0]!, /^GANTRY_TOKENS_FILE: /);
        assert.match(e.problems[0]!, why);
        return true;
      },
      file,
    );
  }
});
