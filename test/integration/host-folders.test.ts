import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { PreemptNotice } from '../../src/runner/preempt-notice.js';
import { startGantry, tempDir } from '../helpers/gantry.js';

/**
 * The folders Gantry writes secrets and notices into sit where any local
 * user may write first (/dev/shm, /tmp: world-writable, sticky). A local
 * user made for the test plants a folder and a link at their paths before
 * Gantry starts: the start must stop, naming the path, and write nothing
 * through them. Needs root (useradd, and to act as that user).
 */
const intruder = `gantry-intruder-${crypto.randomBytes(3).toString('hex')}`;
let uid = 0;
let gid = 0;
/** A world-writable sticky folder, as /dev/shm is. */
let shared = '';

/** Runs a shell command as the intruder. */
const asIntruder = (script: string) => execFileSync('sh', ['-c', script], { uid, gid, stdio: 'pipe' });

before(() => {
  execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', intruder]);
  uid = Number(execFileSync('id', ['-u', intruder], { encoding: 'utf8' }).trim());
  gid = Number(execFileSync('id', ['-g', intruder], { encoding: 'utf8' }).trim());
  shared = tempDir('gantry-shm-');
  fs.chmodSync(shared, 0o1777);
});

after(() => {
  execFileSync('userdel', [intruder]);
  fs.rmSync(shared, { recursive: true, force: true });
});

test('a secret run folder another local user made first stops the start, naming it', async (t) => {
  const runDir = path.join(shared, 'secrets');
  asIntruder(`mkdir -m 0777 ${runDir}`);
  await assert.rejects(startGantry(t, { GANTRY_SECRETS_RUN_DIR: runDir }), (err: Error) => {
    assert.match(err.message, /GANTRY_SECRETS_RUN_DIR: /);
    assert.ok(err.message.includes(`"${runDir}" is owned by uid ${uid}`), err.message);
    return true;
  });
  assert.deepEqual(fs.readdirSync(runDir), [], 'nothing was made in it');
});

test('a notice folder that is a link another local user planted stops the start; nothing is changed through it', async (t) => {
  const target = tempDir('gantry-victim-');
  fs.chmodSync(target, 0o700);
  const noticeDir = path.join(shared, 'notices');
  asIntruder(`ln -s ${target} ${noticeDir}`);
  await assert.rejects(startGantry(t, { GANTRY_NOTICE_DIR: noticeDir }), (err: Error) => {
    assert.match(err.message, /GANTRY_NOTICE_DIR: /);
    assert.ok(err.message.includes(`"${noticeDir}" is a symbolic link`), err.message);
    return true;
  });
  assert.equal(fs.statSync(target).mode & 0o7777, 0o700, 'no chmod through the link');
  assert.deepEqual(fs.readdirSync(target), [], 'no folder made through the link');
});

test('folders Gantry makes are its own, 0700, and the local user can plant nothing in them', async (t) => {
  const runDir = path.join(shared, 'made', 'secrets');
  const noticeDir = path.join(shared, 'made', 'notices');
  const g = await startGantry(t, { GANTRY_SECRETS_RUN_DIR: runDir, GANTRY_NOTICE_DIR: noticeDir });
  const node = g.app.gantry.config.node.name;
  for (const dir of [path.dirname(runDir), runDir, path.join(runDir, node), noticeDir, path.join(noticeDir, node)]) {
    const s = fs.lstatSync(dir);
    assert.ok(s.isDirectory() && s.uid === process.getuid!(), dir);
    assert.equal(s.mode & 0o7777, 0o700, dir);
  }
  // What the intruder would plant: the next attempt's folder, as a link.
  assert.throws(() => asIntruder(`ln -s /etc ${path.join(noticeDir, node, 'job-1')}`));
  assert.throws(() => asIntruder(`ln -s /etc ${path.join(runDir, node, 'job-1')}`));
});

test('the notice is written under a name nobody can guess, never through a link planted at the old fixed name', async () => {
  const noticeDir = tempDir('gantry-notices-');
  const notice = new PreemptNotice(noticeDir, 'node-a', 'job', 1);
  await notice.prepare();
  const folder = path.join(noticeDir, 'node-a', 'job-1');
  assert.equal(fs.statSync(folder).mode & 0o7777, 0o755, 'the job reads its notice folder');
  const victim = path.join(tempDir('gantry-victim-'), 'file');
  fs.writeFileSync(victim, 'untouched');
  fs.symlinkSync(victim, path.join(folder, '.preempt.json.tmp'));
  await notice.write({ reason: 'preempted', signalAt: 'now', killAt: 'later', attempt: 1 });
  assert.equal(fs.readFileSync(victim, 'utf8'), 'untouched');
  assert.equal((await notice.read())?.reason, 'preempted');
});
