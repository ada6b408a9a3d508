import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { z } from 'zod';

const run = promisify(execFile);

export const GpuDeviceSchema = z.object({
  index: z.number().int(),
  uuid: z.string(),
  name: z.string(),
  memoryMiB: z.number().int(),
});
export type GpuDevice = z.infer<typeof GpuDeviceSchema>;

/** The fields asked of nvidia-smi, in order; parseNvidiaSmiCsv reads them back. */
export const NVIDIA_SMI_QUERY = 'index,uuid,name,memory.total';

/**
 * Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total
 * --format=csv,noheader,nounits`. Extra trailing columns are ignored so a
 * wider query (as in the shared fixtures) parses too.
 */
export function parseNvidiaSmiCsv(text: string): GpuDevice[] {
  const gpus: GpuDevice[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('index')) continue;
    const cols = line.split(',').map((c) => c.trim());
    const [index, uuid, name, mem] = cols;
    const memoryMiB = Number.parseInt((mem ?? '').replace(/\s*MiB$/, ''), 10);
    if (index === undefined || !uuid?.startsWith('GPU-') || name === undefined || !Number.isFinite(memoryMiB)) {
      throw new Error(`unexpected nvidia-smi line: "${line}"`);
    }
    gpus.push({ index: Number.parseInt(index, 10), uuid, name, memoryMiB });
  }
  return gpus;
}

/** `UUID:MEMORY_MIB,UUID:MEMORY_MIB` → devices indexed in the given order. */
export function parseStaticGpus(spec: string): GpuDevice[] {
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry, index) => {
      const colon = entry.lastIndexOf(':');
      const uuid = colon > 0 ? entry.slice(0, colon) : '';
      const memoryMiB = Number(entry.slice(colon + 1));
      if (!uuid || !Number.isInteger(memoryMiB) || memoryMiB <= 0) {
        throw new Error(`GANTRY_GPUS: "${entry}" is not UUID:MEMORY_MIB`);
      }
      return { index, uuid, name: 'static', memoryMiB };
    });
}

async function nvidiaSmiOnPath(): Promise<boolean> {
  try {
    await run('nvidia-smi', ['--version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves GANTRY_GPUS: `nvidia-smi`, `none`, or a static list. Unset means
 * `nvidia-smi` when it is on the PATH, else `none`.
 */
export async function discoverGpus(source: string | undefined): Promise<GpuDevice[]> {
  const mode = source ?? ((await nvidiaSmiOnPath()) ? 'nvidia-smi' : 'none');
  if (mode === 'none') return [];
  if (mode === 'nvidia-smi') {
    const { stdout } = await run('nvidia-smi', [`--query-gpu=${NVIDIA_SMI_QUERY}`, '--format=csv,noheader,nounits'], {
      timeout: 30_000,
    });
    return parseNvidiaSmiCsv(stdout);
  }
  return parseStaticGpus(mode);
}
