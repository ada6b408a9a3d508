import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import type { JobSpec } from '../../src/model/job.js';
import { misfit, type PlacementTarget, unplaceable } from '../../src/scheduling/placement.js';

function node(name: string, labels: Record<string, string>, gpus: { name: string; memoryMiB: number }[]): PlacementTarget {
  const alloc = new GpuAllocator(gpus.map((g, index) => ({ index, uuid: `GPU-${name}-${index}`, ...g })));
  return {
    name,
    labels,
    impossibleGpus: (req, model) => alloc.impossible(req, model),
    hasModel: (m) => gpus.some((g) => g.name.toLowerCase().includes(m.toLowerCase())),
  };
}

const spec = (extra: Partial<JobSpec> = {}): JobSpec => ({ image: 'local/busybox:latest', command: ['true'], ...extra });
const h200 = { name: 'NVIDIA H200', memoryMiB: 143771 };
const a100 = { name: 'NVIDIA A100-SXM4-40GB', memoryMiB: 40960 };
const fleet = [node('a', { zone: 'east' }, [h200, h200]), node('b', { zone: 'west' }, [a100, a100, a100, a100])];

test('a node fits a spec unless its name, labels, GPU model or inventory say otherwise', () => {
  const [a, b] = fleet;
  assert.equal(misfit(spec(), a!), null);
  assert.equal(misfit(spec({ placement: { node: 'b' } }), a!)?.path, 'placement.node');
  assert.equal(misfit(spec({ placement: { nodeLabels: { zone: 'west' } } }), a!)?.path, 'placement.nodeLabels');
  assert.equal(misfit(spec({ placement: { nodeLabels: { zone: 'west' } } }), b!), null);
  assert.equal(misfit(spec({ placement: { gpuModel: 'h200' } }), b!)?.path, 'placement.gpuModel');
  assert.equal(misfit(spec({ placement: { gpuModel: 'H200' }, gpus: { count: 2 } }), a!), null);
  assert.equal(misfit(spec({ gpus: { count: 3 } }), a!)?.path, 'gpus');
  assert.equal(misfit(spec({ gpus: { count: 3 } }), b!), null);
  assert.match(misfit(spec({ gpus: { count: 1, memoryMiB: 60000 } }), b!)!.message, /largest GPU has 40960 MiB/);
});

test('a spec is unplaceable only when no node up could ever run it, and the answer names the field', () => {
  assert.equal(unplaceable(spec({ gpus: { count: 4 } }), fleet), null, 'b has four');
  assert.equal(unplaceable(spec({ placement: { gpuModel: 'A100' }, gpus: { count: 4 } }), fleet), null);
  const tooMany = unplaceable(spec({ gpus: { count: 5 } }), fleet)!;
  assert.equal(tooMany.path, 'gpus');
  assert.match(tooMany.message, /a: asks for 5 GPU\(s\) but this host has 2; b: asks for 5 GPU\(s\) but this host has 4/);
  const unknown = unplaceable(spec({ placement: { node: 'zz' } }), fleet)!;
  assert.equal(unknown.path, 'placement.node');
  assert.match(unknown.message, /no node "zz" is up in the fleet \(nodes up: "a", "b"\)/);
  assert.equal(unplaceable(spec({ placement: { nodeLabels: { zone: 'north' } } }), fleet)!.path, 'placement.nodeLabels');
  assert.equal(unplaceable(spec({ placement: { gpuModel: 'H200' }, gpus: { count: 3 } }), fleet)!.path, 'gpus');
  assert.equal(unplaceable(spec(), [])!.path, 'placement');
});

test('one node: its own reason, unchanged', () => {
  const only = [node('solo', {}, [h200])];
  assert.deepEqual(unplaceable(spec({ gpus: { count: 2 } }), only), { path: 'gpus', message: 'asks for 2 GPU(s) but this host has 1' });
});

test('GPU model filters what the allocator hands out', () => {
  const alloc = new GpuAllocator([
    { index: 0, uuid: 'GPU-x', ...a100 },
    { index: 1, uuid: 'GPU-y', ...h200 },
  ]);
  assert.deepEqual(alloc.tryAllocate('j1', { count: 1 }, 'H200')?.uuids, ['GPU-y']);
  assert.equal(alloc.tryAllocate('j2', { count: 1 }, 'H200'), null, 'the only H200 is held');
  assert.deepEqual(alloc.tryAllocate('j3', { count: 1 })?.uuids, ['GPU-x']);
  assert.match(alloc.impossible({ ids: ['0'] }, 'H200')!, /GPU "0" is not of model "H200"/);
});
