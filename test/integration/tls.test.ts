/**
 * TLS on the API, with real certificates made by openssl and real
 * handshakes: HTTPS only when configured, mutual TLS with a client CA, a
 * certificate renewed on disk taken up on SIGHUP without a restart, and
 * bad files refused at start naming the variable.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { ADMIN_TOKEN, freePort, ROOT, tempDir, testEnv } from '../helpers/gantry.js';

/** A CA, a server certificate for 127.0.0.1 signed by it, and a client certificate signed by it. */
function makeCerts(dir: string, serverCn = 'gantry-one') {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  if (!fs.existsSync(path.join(dir, 'ca.pem'))) {
    ssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=gantry-test-ca',
    );
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=airflow');
    ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2');
  }
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key.new', '-out', 'server.csr', '-subj', `/CN=${serverCn}`);
  ssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem.new',
    '-days',
    '2',
    '-extfile',
    'san.ext',
  );
  // Renamed into place, as a certificate manager does.
  fs.renameSync(path.join(dir, 'server.key.new'), path.join(dir, 'server.key'));
  fs.renameSync(path.join(dir, 'server.pem.new'), path.join(dir, 'server.pem'));
  const file = (f: string) => path.join(dir, f);
  return {
    ca: file('ca.pem'),
    cert: file('server.pem'),
    key: file('server.key'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
  };
}

interface Started {
  proc: ChildProcess;
  port: number;
  output: () => string;
}

async function startTlsGantry(
  t: { after(fn: () => unknown): void },
  env: Record<string, string>,
  ready: (port: number) => Promise<boolean>,
): Promise<Started> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, ...testEnv(tempDir(), { GANTRY_PORT: String(port), GANTRY_DOCKER_SOCKET: '/nonexistent.sock', ...env }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  t.after(() => proc.kill('SIGKILL'));
  const deadline = Date.now() + 30_000;
  while (!(await ready(port).catch(() => false))) {
    if (proc.exitCode !== null) throw new Error(`gantry exited (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) throw new Error(`gantry did not come up:\n${out}`);
    await sleep(100);
  }
  return { proc, port, output: () => out };
}

async function healthz(port: number, o: { ca: string; cert?: string; key?: string }): Promise<number> {
  const dispatcher = new Agent({
    connect: {
      ca: fs.readFileSync(o.ca),
      ...(o.cert ? { cert: fs.readFileSync(o.cert), key: fs.readFileSync(o.key!) } : {}),
    },
  });
  try {
    const r = await request(`https://127.0.0.1:${port}/v1/me`, { dispatcher, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await r.body.text();
    return r.statusCode;
  } finally {
    await dispatcher.close();
  }
}

/** The common name of the certificate the server presents now, over a new connection. */
function servedCn(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(ca) }, () => {
      resolve(String(s.getPeerCertificate().subject.CN));
      s.end();
    });
    s.on('error', reject);
  });
}

test('with a certificate and key the API speaks HTTPS only, and a renewed certificate is taken up on SIGHUP', async (t) => {
  const dir = tempDir('gantry-tls-');
  const c = makeCerts(dir, 'gantry-one');
  const g = await startTlsGantry(t, { GANTRY_TLS_CERT: c.cert, GANTRY_TLS_KEY: c.key }, async (port) => (await healthz(port, c)) === 200);
  assert.equal(await healthz(g.port, c), 200, 'HTTPS with the CA: the token is checked and answered');
  await assert.rejects(
    request(`http://127.0.0.1:${g.port}/healthz`).then((r) => r.body.text()),
    'plain HTTP gets no answer',
  );
  await assert.rejects(
    request(`https://127.0.0.1:${g.port}/healthz`).then((r) => r.body.text()),
    /self-signed|unable to verify|certificate/i,
    'a client that does not trust the CA refuses the certificate',
  );
  assert.equal(await servedCn(g.port, c.ca), 'gantry-one');

  makeCerts(dir, 'gantry-two');
  assert.equal(await servedCn(g.port, c.ca), 'gantry-one', 'nothing changes before the signal');
  g.proc.kill('SIGHUP');
  for (let i = 0; i < 50 && (await servedCn(g.port, c.ca)) !== 'gantry-two'; i++) await sleep(100);
  assert.equal(await servedCn(g.port, c.ca), 'gantry-two', 'new connections get the renewed certificate');

  fs.writeFileSync(c.cert, 'not a certificate');
  g.proc.kill('SIGHUP');
  for (let i = 0; i < 50 && !g.output().includes('TLS certificate not reloaded'); i++) await sleep(100);
  assert.match(g.output(), /TLS certificate not reloaded/);
  assert.equal(await servedCn(g.port, c.ca), 'gantry-two', 'a broken file keeps the certificate in use');
  assert.equal(g.proc.exitCode, null, 'and Gantry keeps running');
});

test('with a client CA only clients with a certificate it signed get through the handshake', async (t) => {
  const c = makeCerts(tempDir('gantry-mtls-'));
  const withClient = { ca: c.ca, cert: c.clientCert, key: c.clientKey };
  const g = await startTlsGantry(
    t,
    { GANTRY_TLS_CERT: c.cert, GANTRY_TLS_KEY: c.key, GANTRY_TLS_CLIENT_CA: c.ca },
    async (port) => (await healthz(port, withClient)) === 200,
  );
  assert.equal(await healthz(g.port, withClient), 200);
  await assert.rejects(healthz(g.port, { ca: c.ca }), 'no client certificate: refused in the handshake');
  const stranger = makeCerts(tempDir('gantry-other-ca-'));
  await assert.rejects(
    healthz(g.port, { ca: c.ca, cert: stranger.clientCert, key: stranger.clientKey }),
    'a client certificate of another CA: refused',
  );
});

test('TLS settings that cannot work stop the start with the variable named', () => {
  const run = (env: Record<string, string>) => {
    try {
      execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts')], {
        cwd: ROOT,
        env: { ...process.env, ...testEnv(tempDir(), { GANTRY_DOCKER_SOCKET: '/nonexistent.sock', ...env }) },
        stdio: 'pipe',
        timeout: 30_000,
      });
      return { code: 0, err: '' };
    } catch (e) {
      const err = e as { status: number; stderr: Buffer };
      return { code: err.status, err: err.stderr.toString() };
    }
  };
  const c = makeCerts(tempDir('gantry-tls-bad-'));
  const onlyCert = run({ GANTRY_TLS_CERT: c.cert });
  assert.equal(onlyCert.code, 2);
  assert.match(onlyCert.err, /GANTRY_TLS_KEY: GANTRY_TLS_CERT and GANTRY_TLS_KEY go together/);
  const caAlone = run({ GANTRY_TLS_CLIENT_CA: c.ca });
  assert.match(caAlone.err, /GANTRY_TLS_CLIENT_CA: needs GANTRY_TLS_CERT/);
  const missing = run({ GANTRY_TLS_CERT: '/nonexistent.pem', GANTRY_TLS_KEY: c.key });
  assert.equal(missing.code, 2);
  assert.match(missing.err, /GANTRY_TLS_CERT: cannot read "\/nonexistent.pem"/);
  const mismatched = run({ GANTRY_TLS_CERT: c.cert, GANTRY_TLS_KEY: c.clientKey });
  assert.equal(mismatched.code, 2);
  assert.match(mismatched.err, /GANTRY_TLS_CERT: the certificate, key or client CA is not usable/);
});
