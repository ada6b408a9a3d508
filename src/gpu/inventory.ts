import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { z } from 'zod';
import { ConfigError } from '../config.js';

const run = promisify(execFile);

export const GpuDeviceSchema = z.object({
  index: z.number().int(),
  uuid: z.string(),
  name: z.string(),
  memoryMiB: z.number().int(),
  /**
   * The N of /dev/nvidiaN. nvidia-smi's index follows PCI order and usually,
   * but not always, equals the device minor; the devices driver needs the
   * minor. Unknown (static inventories) means "same as index".
   */
  minor: z.number().int().optional(),
});
export type GpuDevice = z.infer<typeof GpuDeviceSchema>;

/** The fields asked of nvidia-smi, in order; parseNvidiaSmiCsv reads them back. */
export const NVIDIA_SMI_QUERY = 'index,uuid,name,memory.total,pci.bus_id';

const BUS_ID = /^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$/i;

/**
 * Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total[,pci.bus_id]
 * --format=csv,noheader,nounits`. A header line, `MiB` units and extra
 * trailing columns are tolerated, so the wider queries kept as fixtures parse
 * too. Returns the PCI bus id of each GPU when the fifth column holds one.
 */
export function parseNvidiaSmiCsv(text: string): (GpuDevice & { busId?: string })[] {
  const gpus: (GpuDevice & { busId?: string })[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('index')) continue;
    const cols = line.split(',').map((c) => c.trim());
    const [index, uuid, name, mem, bus] = cols;
    const memoryMiB = Number.parseInt((mem ?? '').replace(/\s*MiB$/, ''), 10);
    if (!/^\d+$/.test(index ?? '') || !uuid?.startsWith('GPU-') || !name || !Number.isFinite(memoryMiB)) {
      throw new Error(`unexpected nvidia-smi line: "${line}"`);
    }
    gpus.push({ index: Number.parseInt(index!, 10), uuid, name, memoryMiB, ...(bus && BUS_ID.test(bus) ? { busId: bus } : {}) });
  }
  return gpus;
}

/** `UUID:MEMORY_MIB,UUID:MEMORY_MIB` → devices indexed in the given order; a bad entry is a ConfigError. */
export function parseStaticGpus(spec: string): GpuDevice[] {
  const seen = new Set<string>();
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry, index) => {
      const colon = entry.lastIndexOf(':');
      const uuid = colon > 0 ? entry.slice(0, colon) : '';
      const memoryMiB = Number(entry.slice(colon + 1));
      if (!uuid || /^\d+$/.test(uuid) || !Number.isInteger(memoryMiB) || memoryMiB <= 0) {
        throw new ConfigError('GANTRY_GPUS', `"${entry}" is not UUID:MEMORY_MIB`);
      }
      if (seen.has(uuid)) throw new ConfigError('GANTRY_GPUS', `"${uuid}" is listed twice`);
      seen.add(uuid);
      return { index, uuid, name: 'static', memoryMiB };
    });
}

/**
 * The device minor (N of /dev/nvidiaN) of the GPU at a PCI bus id, read from
 * the driver's /proc/driver/nvidia/gpus/<bus>/information; null when unknown.
 */
export function readDeviceMinor(busId: string, procRoot = '/proc/driver/nvidia/gpus'): number | null {
  // nvidia-smi prints an 8-digit PCI domain ("00000000:00:06.0"), /proc a 4-digit one.
  const short = busId.toLowerCase().replace(/^0{4}([0-9a-f]{4}:)/, '$1');
  for (const dir of [short, busId.toLowerCase()]) {
    try {
      const m = /^Device Minor:\s*(\d+)/m.exec(fs.readFileSync(`${procRoot}/${dir}/information`, 'utf8'));
      if (m) return Number(m[1]);
    } catch {
      // not this spelling, or no such file
    }
  }
  return null;
}

async function nvidiaSmiOnPath(): Promise<boolean> {
  try {
    await run('nvidia-smi', ['--version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Asks nvidia-smi for the GPUs; a failure names the command and what it said. */
export async function queryNvidiaSmi(): Promise<GpuDevice[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('nvidia-smi', [`--query-gpu=${NVIDIA_SMI_QUERY}`, '--format=csv,noheader,nounits'], {
      timeout: 30_000,
    }));
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    const said = (e.stderr || e.stdout || e.message).trim();
    throw new Error(`GANTRY_GPUS=nvidia-smi: nvidia-smi failed: ${said}`);
  }
  return parseNvidiaSmiCsv(stdout).map(({ busId, ...d }) => {
    const minor = busId ? readDeviceMinor(busId) : null;
    return minor === null ? d : { ...d, minor };
  });
}

/**
 * Resolves GANTRY_GPUS: `nvidia-smi`, `none`, or a static list. Unset means
 * `nvidia-smi` when it is on the PATH, else `none`.
 */
export async function discoverGpus(source: string | undefined): Promise<GpuDevice[]> {
  const mode = source ?? ((await nvidiaSmiOnPath()) ? 'nvidia-smi' : 'none');
  if (mode === 'none') return [];
  if (mode === 'nvidia-smi') return queryNvidiaSmi();
  return parseStaticGpus(mode);
}
