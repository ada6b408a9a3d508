import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The per-card fields asked of nvidia-smi each sample, in order; parseCardSamples reads them back. */
export const CARD_QUERY = 'uuid,utilization.gpu,memory.used,power.draw';
/** The per-process fields asked each sample; parseComputeApps reads them back. */
export const APPS_QUERY = 'gpu_uuid,pid,used_memory';

export interface CardSample {
  uuid: string;
  utilizationPct: number | null;
  memoryUsedMiB: number | null;
  powerWatts: number | null;
}

export interface ComputeApp {
  gpuUuid: string;
  /** The process id as the host sees it (nvidia-smi runs in the host's PID namespace). */
  pid: number;
  usedMemoryMiB: number | null;
}

/**
 * A number from a `nounits` CSV cell; null for what nvidia-smi prints when
 * it has no value (`[N/A]`, `[Not Supported]`, `[Unknown Error]`, `N/A`).
 */
function cell(text: string | undefined): number | null {
  const t = (text ?? '').trim();
  if (t === '' || t.startsWith('[') || t === 'N/A') return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

function rows(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('No running'))
    .map((l) => l.split(',').map((c) => c.trim()));
}

/** Parses `nvidia-smi --query-gpu=uuid,utilization.gpu,memory.used,power.draw --format=csv,noheader,nounits`. */
export function parseCardSamples(text: string): CardSample[] {
  return rows(text).map((cols) => {
    const [uuid, util, mem, power] = cols;
    if (!uuid?.startsWith('GPU-') || cols.length < 4) throw new Error(`unexpected nvidia-smi line: "${cols.join(', ')}"`);
    return { uuid, utilizationPct: cell(util), memoryUsedMiB: cell(mem), powerWatts: cell(power) };
  });
}

/** Parses `nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits` (empty when no process uses a card). */
export function parseComputeApps(text: string): ComputeApp[] {
  return rows(text).map((cols) => {
    const [gpuUuid, pid, mem] = cols;
    const p = cell(pid);
    if (!gpuUuid?.startsWith('GPU-') || p === null || !Number.isInteger(p)) {
      throw new Error(`unexpected nvidia-smi compute-apps line: "${cols.join(', ')}"`);
    }
    return { gpuUuid, pid: p, usedMemoryMiB: cell(mem) };
  });
}

export interface GpuReading {
  cards: CardSample[];
  apps: ComputeApp[];
}

/**
 * One reading of every card and every compute process: two nvidia-smi runs,
 * whatever the number of cards or jobs, so a sample's cost does not grow
 * with them. A failure names the command and what it said.
 */
export async function readGpus(timeoutMs: number): Promise<GpuReading> {
  const ask = async (query: string): Promise<string> => {
    try {
      return (await run('nvidia-smi', [query, '--format=csv,noheader,nounits'], { timeout: timeoutMs })).stdout;
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`nvidia-smi ${query} failed: ${(e.stderr || e.stdout || e.message).trim()}`);
    }
  };
  const [cards, apps] = await Promise.all([ask(`--query-gpu=${CARD_QUERY}`), ask(`--query-compute-apps=${APPS_QUERY}`)]);
  return { cards: parseCardSamples(cards), apps: parseComputeApps(apps) };
}
