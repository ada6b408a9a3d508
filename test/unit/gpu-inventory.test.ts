import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { discoverGpus, NVIDIA_SMI_QUERY, parseNvidiaSmiCsv, parseStaticGpus, readDeviceMinor } from '../../src/gpu/inventory.js';
import { ROOT, tempDir } from '../helpers/gantry.js';

const FIXTURES = path.join(ROOT, 'test/fixtures/nvidia-smi');
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name), 'utf8');
const H200 = { index: 0, uuid: 'GPU-1f6d7f84-bb7d-4d29-65af-0ac131617fd4', name: 'NVIDIA H200', memoryMiB: 143771 };

test('real H200 nvidia-smi output parses: the wide query, with and without header and units', () => {
  assert.deepEqual(parseNvidiaSmiCsv(fixture('h200-x1/nvsmi-query.csv')), [H200]);
  assert.deepEqual(parseNvidiaSmiCsv(fixture('h200-x1/nvsmi-query-header.csv')), [H200]);
});

test('the query Gantry runs, as recorded on the H200 machine, gives the bus id that leads to the device minor', () => {
  assert.equal(NVIDIA_SMI_QUERY, 'index,uuid,name,memory.total,pci.bus_id');
  const E2E = { index: 0, uuid: 'GPU-c70e87bb-33ec-dd9d-b75a-d3f9e151edb9', name: 'NVIDIA H200', memoryMiB: 143771 };
  assert.deepEqual(parseNvidiaSmiCsv(fixture('h200-e2e/query.csv')), [E2E]);
  assert.deepEqual(parseNvidiaSmiCsv(fixture('h200-e2e/gantry-query.csv')), [{ ...E2E, busId: '00000000:00:06.0' }]);
  // /proc/driver/nvidia/gpus/0000:00:06.0/information from the same machine.
  const proc = tempDir('gantry-proc-');
  fs.mkdirSync(path.join(proc, '0000:00:06.0'));
  fs.copyFileSync(path.join(FIXTURES, 'h200-e2e/proc-information'), path.join(proc, '0000:00:06.0', 'information'));
  assert.equal(readDeviceMinor('00000000:00:06.0', proc), 0);
});

test('the two-GPU H200 machine (nvidia-h200-x2), as recorded by GPU_E2E_MODE=two: two cards, distinct UUIDs, minors 0 and 1', () => {
  const gpus = parseNvidiaSmiCsv(fixture('h200-x2/gantry-query.csv'));
  assert.deepEqual(gpus, [
    { index: 0, uuid: 'GPU-bf882557-d398-ec5a-a348-119f2369fb41', name: 'NVIDIA H200', memoryMiB: 143771, busId: '00000000:00:06.0' },
    { index: 1, uuid: 'GPU-aa694fa2-111c-4524-7ac7-efa2ec117766', name: 'NVIDIA H200', memoryMiB: 143771, busId: '00000000:00:07.0' },
  ]);
  assert.equal(new Set(gpus.map((g) => g.uuid)).size, 2);
  assert.deepEqual(
    parseNvidiaSmiCsv(fixture('h200-x2/query.csv')).map((g) => g.uuid),
    gpus.map((g) => g.uuid),
  );
  // /proc/driver/nvidia/gpus/<bus>/information of both cards, from the same machine.
  const proc = tempDir('gantry-proc-');
  for (const bus of ['0000:00:06.0', '0000:00:07.0']) {
    fs.mkdirSync(path.join(proc, bus));
    fs.copyFileSync(path.join(FIXTURES, `h200-x2/proc-information-${bus.replaceAll(':', '-')}`), path.join(proc, bus, 'information'));
  }
  assert.deepEqual(
    gpus.map((g) => readDeviceMinor(g.busId!, proc)),
    [0, 1],
  );
});

test('several GPUs, CRLF line ends and blank lines', () => {
  const text =
    '0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA A100-SXM4-80GB, 81920, 00000000:07:00.0\r\n\r\n' +
    '1, GPU-bbbbbbbb-0000-0000-0000-000000000000, NVIDIA A100-SXM4-80GB, 81920, 00000000:0F:00.0\r\n';
  assert.deepEqual(
    parseNvidiaSmiCsv(text).map((g) => [g.index, g.uuid.slice(4, 8), g.memoryMiB, g.busId]),
    [
      [0, 'aaaa', 81920, '00000000:07:00.0'],
      [1, 'bbbb', 81920, '00000000:0F:00.0'],
    ],
  );
});

test('nvidia-smi lines that are not GPUs are an error, not silently dropped', () => {
  assert.throws(() => parseNvidiaSmiCsv('No devices were found'), /unexpected nvidia-smi line/);
  assert.throws(() => parseNvidiaSmiCsv('0, GPU-x, NVIDIA H200, [N/A]'), /unexpected nvidia-smi line/);
});

test('static inventory: UUID:MEMORY_MIB in order; bad entries and duplicates are refused', () => {
  assert.deepEqual(parseStaticGpus('GPU-a:81920, GPU-b:40960'), [
    { index: 0, uuid: 'GPU-a', name: 'static', memoryMiB: 81920 },
    { index: 1, uuid: 'GPU-b', name: 'static', memoryMiB: 40960 },
  ]);
  for (const bad of ['GPU-a', 'GPU-a:', ':100', 'GPU-a:-1', 'GPU-a:1.5', 'GPU-a:lots', '3:100']) {
    assert.throws(() => parseStaticGpus(bad), /is not UUID:MEMORY_MIB/, bad);
  }
  assert.throws(() => parseStaticGpus('GPU-a:1,GPU-a:2'), /listed twice/);
});

test('the device minor comes from /proc/driver/nvidia/gpus/<bus>/information', () => {
  const proc = tempDir('gantry-proc-');
  fs.mkdirSync(path.join(proc, '0000:0f:00.0'));
  fs.writeFileSync(
    path.join(proc, '0000:0f:00.0', 'information'),
    'Model: \t\t NVIDIA H200\nIRQ:   \t\t 42\nGPU UUID: \t GPU-bbbb\nDevice Minor: \t 3\nBus Location: \t 0000:0f:00.0\n',
  );
  assert.equal(readDeviceMinor('00000000:0F:00.0', proc), 3);
  assert.equal(readDeviceMinor('00000000:10:00.0', proc), null);
});

test('GANTRY_GPUS: none, a static list, and the default when nvidia-smi is not on the PATH', async () => {
  assert.deepEqual(await discoverGpus('none'), []);
  assert.equal((await discoverGpus('GPU-a:100')).length, 1);
  const saved = process.env.PATH;
  process.env.PATH = tempDir('gantry-empty-path-');
  try {
    assert.deepEqual(await discoverGpus(undefined), []);
  } finally {
    process.env.PATH = saved;
  }
});

test('GANTRY_GPUS=nvidia-smi runs the query (an nvidia-smi on the PATH replaying the H200 output), and its failure is explained', async () => {
  const bin = tempDir('gantry-fake-smi-');
  const smi = path.join(bin, 'nvidia-smi');
  const log = path.join(bin, 'args');
  fs.writeFileSync(
    smi,
    `#!/bin/sh\necho "$@" >> ${log}\n[ "$1" = --version ] && exit 0\n` +
      `[ -n "$FAIL_SMI" ] && { echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2; exit 9; }\n` +
      `cat ${path.join(FIXTURES, 'h200-e2e/gantry-query.csv')}\n`,
  );
  fs.chmodSync(smi, 0o755);
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  try {
    const gpus = await discoverGpus(undefined); // default: nvidia-smi is on the PATH
    assert.equal(gpus.length, 1);
    assert.equal(gpus[0]!.name, 'NVIDIA H200');
    assert.equal('busId' in gpus[0]!, false, 'the bus id is used for the minor, not exposed');
    assert.match(fs.readFileSync(log, 'utf8'), /--query-gpu=index,uuid,name,memory.total,pci.bus_id --format=csv,noheader,nounits/);
    process.env.FAIL_SMI = '1';
    await assert.rejects(discoverGpus('nvidia-smi'), /GANTRY_GPUS=nvidia-smi: nvidia-smi failed: NVIDIA-SMI has failed/);
  } finally {
    process.env.PATH = saved;
    delete process.env.FAIL_SMI;
  }
});
