import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { hashToken } from '../../src/auth/tokens.js';
import type { AuditRecord } from '../../src/model/audit.js';
import { ADMIN_TOKEN, client, spawnGantry, tempDir } from '../helpers/gantry.js';

const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';
const entry = (owner: string, token: string) => ({ owner, scopes: ['read'], sha256: hashToken(token) });

test('SIGHUP re-reads the tokens file: added tokens work, revoked ones are refused, a bad file keeps the tokens in use; each reload is audited', async (t) => {
  const file = path.join(tempDir(), 'tokens.json');
  fs.writeFileSync(file, JSON.stringify([entry('alice', ALICE)]));
  const g = await spawnGantry(tempDir(), { GANTRY_TOKENS_FILE: file });
  t.after(() => g.stop());
  const status = async (token: string) => (await client(g.url, token).call('GET', '/v1/me')).status;
  assert.deepEqual([await status(ALICE), await status(BOB), await status(ADMIN_TOKEN)], [200, 401, 200]);

  const reloads = async (n: number): Promise<AuditRecord[]> => {
    for (let i = 0; i < 100; i++) {
      const items = (await g.call<{ items: AuditRecord[] }>('GET', '/v1/audit?action=config.reload')).body.items;
      if (items.length >= n) return items;
      await sleep(100);
    }
    throw new Error(`fewer than ${n} reloads recorded:\n${g.output()}`);
  };

  fs.writeFileSync(file, JSON.stringify([entry('bob', BOB)]));
  g.proc.kill('SIGHUP');
  const [first] = await reloads(1);
  assert.deepEqual([first!.target, first!.outcome], ['tokens', 'ok']);
  assert.deepEqual([await status(ALICE), await status(BOB), await status(ADMIN_TOKEN)], [401, 200, 200], 'GANTRY_ADMIN_TOKEN still counts');

  fs.writeFileSync(file, '[{"owner": "carol"');
  g.proc.kill('SIGHUP');
  const [failed] = await reloads(2);
  assert.deepEqual([failed!.target, failed!.outcome], ['tokens', 'failed']);
  assert.match(String(failed!.detail.error), /GANTRY_TOKENS_FILE: .* is not JSON/);
  assert.equal(await status(BOB), 200, 'the tokens in use stay');
});
