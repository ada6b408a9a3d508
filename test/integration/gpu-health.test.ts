import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditRecord } from '../../src/model/audit.js';
import { type ChildGantry, ROOT, spawnGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

// The two-card H200 machine as recorded (inventory) and its health answers
// (constructed from the real format: test/fixtures/nvidia-smi/h200-health/README.md).
const SMI = path.join(ROOT, 'test/fixtures/nvidia-smi');
const U0 = 'GPU-bf882557-d398-ec5a-a348-119f2369fb41';
const U1 = 'GPU-aa694fa2-111c-4524-7ac7-efa2ec117766';

interface Gpu {
  index: number;
  uuid: string;
  holders: { jobId: string }[];
  health: { state: string; code: string | null; reason: string | null; since: string | null; by: string | null };
}

/** An nvidia-smi on the PATH that answers Gantry's inventory query and the health queries from fixture files. */
function fakeNvidiaSmi(dir: string): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.copyFileSync(path.join(SMI, 'h200-health/health-query.csv'), path.join(dir, 'health.csv'));
  fs.copyFileSync(path.join(SMI, 'h200-health/remapped-rows.csv'), path.join(dir, 'remap.csv'));
  fs.writeFileSync(
    path.join(bin, 'nvidia-smi'),
    '#!/bin/sh\n' +
      'case "$1" in\n' +
      '  --version) echo "NVIDIA-SMI version  : 580.159.04" ;;\n' +
      `  --query-gpu=index,*) cat ${path.join(SMI, 'h200-x2/gantry-query.csv')} ;;\n` +
      `  --query-gpu=uuid,*) cat ${dir}/health.csv ;;\n` +
      `  --query-remapped-rows=*) cat ${dir}/remap.csv ;;\n` +
      '  *) exit 2 ;;\n' +
      'esac\n',
  );
  fs.chmodSync(path.join(bin, 'nvidia-smi'), 0o755);
  return bin;
}

async function gpus(g: ChildGantry): Promise<Gpu[]> {
  const r = await g.call<{ items: Gpu[] }>('GET', '/v1/gpus');
  assert.equal(r.status, 200, r.text);
  return r.body.items;
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('a device Xid on the card a job holds: the card turns unhealthy, the job fails gpu_error and runs again on the other card, nothing new gets the card until an admin undrains it, across a restart; then nvidia-smi reports ECC errors on it', async (t) => {
  const dir = tempDir('gantry-gpu-health-');
  const gate = tempDir('gantry-gate-');
  const kmsg = path.join(dir, 'kmsg');
  fs.writeFileSync(kmsg, '');
  const env = {
    PATH: `${fakeNvidiaSmi(dir)}:${process.env.PATH}`,
    GANTRY_GPUS: 'nvidia-smi',
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_GPU_HEALTH_INTERVAL_SECONDS: '1',
    GANTRY_GPU_KERNEL_LOG: kmsg,
    GANTRY_MOUNT_ALLOWLIST: gate,
  };
  const data = tempDir();
  let g = await spawnGantry(data, env);
  t.after(() => g.stop('SIGKILL'));

  assert.deepEqual(
    (await gpus(g)).map((c) => [c.uuid, c.health.state]),
    [
      [U0, 'healthy'],
      [U1, 'healthy'],
    ],
  );
  const unknown = await g.call('POST', '/v1/gpus/GPU-00000000-0000-0000-0000-000000000000/drain');
  assert.equal(unknown.status, 404, unknown.text);

  // Drain card 0 so the job lands on card 1, then put card 0 back.
  const drained = await g.call<Gpu>('POST', `/v1/gpus/${U0}/drain`, { body: { reason: 'reseating' } });
  assert.equal(drained.status, 200, drained.text);
  assert.deepEqual([drained.body.health.state, drained.body.health.reason, drained.body.health.by], ['drained', 'reseating', 'admin']);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'while [ ! -e /gate/open ]; do sleep 0.05; done; echo $NVIDIA_VISIBLE_DEVICES'],
    gpus: { count: 1 },
    mounts: [{ source: gate, target: '/gate' }],
    retry: { maxAttempts: 2, rules: [{ cause: 'gpu_error', action: 'retry' }] },
  });
  await g.waitFor(job.id, (j) => j.state === 'running');
  assert.deepEqual(j2h(await gpus(g)), { [U0]: [], [U1]: [job.id] });
  assert.equal((await g.call<Gpu>('POST', `/v1/gpus/${U0}/undrain`)).body.health.state, 'healthy');

  // An application Xid on card 0 leaves it in service; the driver's Xid 79 on card 1 does not.
  fs.appendFileSync(kmsg, fs.readFileSync(path.join(SMI, 'h200-health/kmsg-xid13.txt')));
  fs.appendFileSync(kmsg, fs.readFileSync(path.join(SMI, 'h200-health/kmsg-xid79.txt')));
  const bad = await until('card 1 unhealthy', async () => (await gpus(g)).find((c) => c.uuid === U1 && c.health.state === 'unhealthy'));
  assert.deepEqual([bad.health.code, bad.health.reason, bad.health.by], ['xid_79', 'Xid 79: GPU has fallen off the bus.', null]);
  assert.equal((await gpus(g)).find((c) => c.uuid === U0)!.health.state, 'healthy');

  // The job's first attempt failed with gpu_error naming the card and the fault; the retry runs on card 0.
  const second = await g.waitFor(job.id, (j) => j.state === 'running' && j.attempt === 2);
  assert.equal(second.attempts[0]!.cause, 'gpu_error');
  assert.equal(second.attempts[0]!.outcome, 'failed');
  assert.deepEqual(second.attempts[0]!.gpus, [U1]);
  assert.match(
    second.attempts[0]!.reason!,
    /^GPU 1 \(GPU-aa694fa2-111c-4524-7ac7-efa2ec117766\) is unhealthy: Xid 79: GPU has fallen off the bus\. \[xid_79\]$/,
  );
  assert.deepEqual(j2h(await gpus(g)), { [U0]: [job.id], [U1]: [] });
  fs.writeFileSync(path.join(gate, 'open'), '');
  const done = await g.waitFor(job.id);
  assert.deepEqual([done.state, done.result], ['succeeded', U0]);

  // A job that needs card 1 waits, saying why; one that any card can run is not held up.
  const wantsOne = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo $NVIDIA_VISIBLE_DEVICES'], gpus: { ids: ['1'] } });
  const anyCard = await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo $NVIDIA_VISIBLE_DEVICES'], gpus: { count: 1 } });
  assert.equal((await g.waitFor(anyCard.id)).result, U0);
  const waiting = await g.job(wantsOne.id);
  assert.equal(waiting.state, 'queued');
  assert.equal(waiting.waiting?.code, 'gpus_out_of_service');
  assert.match(waiting.reason!, /GPU 1 \(unhealthy: Xid 79: GPU has fallen off the bus\.\)/);

  const metrics = (await g.call('GET', '/metrics')).text;
  assert.match(metrics, new RegExp(`gantry_gpu_health\\{gpu="1",uuid="${U1}",state="unhealthy",code="xid_79"\\} 1`));
  assert.match(metrics, new RegExp(`gantry_gpu_health\\{gpu="0",uuid="${U0}",state="healthy",code=""\\} 1`));
  assert.match(metrics, new RegExp(`gantry_gpu_faults_total\\{gpu="1",uuid="${U1}",code="xid_79",class="device"\\} 1`));
  assert.match(metrics, new RegExp(`gantry_gpu_faults_total\\{gpu="0",uuid="${U0}",code="xid_13",class="application"\\} 1`));

  // A restart keeps the card out of service (the Xid already in the kernel log is not read again).
  await g.stop('SIGTERM');
  g = await spawnGantry(data, env);
  await sleep(2500); // two health polls
  const afterRestart = (await gpus(g)).find((c) => c.uuid === U1)!;
  assert.deepEqual([afterRestart.health.state, afterRestart.health.code], ['unhealthy', 'xid_79']);
  assert.equal((await g.job(wantsOne.id)).state, 'queued');

  // The admin says the card is fine: the waiting job gets it.
  const back = await g.call<Gpu>('POST', `/v1/gpus/${U1}/undrain`);
  assert.deepEqual([back.status, back.body.health.state], [200, 'healthy']);
  const ran = await g.waitFor(wantsOne.id);
  assert.deepEqual([ran.state, ran.result], ['succeeded', U1]);

  // nvidia-smi's next answer counts 2 uncorrectable ECC errors on card 1: out of service again.
  fs.copyFileSync(path.join(SMI, 'h200-health/health-query-ecc.csv'), path.join(dir, 'health.csv'));
  const ecc = await until('card 1 unhealthy for ECC', async () =>
    (await gpus(g)).find((c) => c.uuid === U1 && c.health.code === 'ecc_uncorrected'),
  );
  assert.deepEqual(
    [ecc.health.state, ecc.health.reason],
    ['unhealthy', '2 uncorrectable ECC error(s) since the driver loaded (ecc.errors.uncorrected.volatile.total)'],
  );

  const audit = await g.call<{ items: AuditRecord[] }>('GET', '/v1/audit?limit=50');
  const gpuActions = audit.body.items
    .filter((r) => r.action.startsWith('gpu.'))
    .map((r) => [r.action, r.target, r.actor, r.outcome, r.status])
    .reverse();
  assert.deepEqual(gpuActions, [
    ['gpu.drain', 'GPU-00000000-0000-0000-0000-000000000000', 'admin', 'refused', 404],
    ['gpu.drain', U0, 'admin', 'ok', 200],
    ['gpu.undrain', U0, 'admin', 'ok', 200],
    ['gpu.undrain', U1, 'admin', 'ok', 200],
  ]);
});

/** The jobs holding each card. */
function j2h(list: Gpu[]): Record<string, string[]> {
  return Object.fromEntries(list.map((c) => [c.uuid, c.holders.map((h) => h.jobId)]));
}
