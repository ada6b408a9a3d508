/**
 * What nvidia-smi says about each card's health. Two queries, because the
 * row remapper has its own (`--query-remapped-rows`); both are asked with
 * `--format=csv,noheader,nounits`, one line per card.
 */
export const HEALTH_QUERY = 'uuid,pci.bus_id,ecc.errors.uncorrected.volatile.total,retired_pages.pending';
export const REMAP_QUERY = 'gpu_uuid,remapped_rows.failure';

/** One card's readings; null where the card has no such counter (`[N/A]`, `[Not Supported]`). */
export interface CardReading {
  uuid: string;
  busId: string;
  /** Uncorrectable ECC errors since the driver loaded (volatile). */
  eccUncorrected: number | null;
  /** A retired page waits for a reboot to take effect (Volta and older; Hopper has row remapping instead). */
  retirementPending: boolean | null;
}

/** nvidia-smi's ways of saying "no value" for a field. */
const NO_VALUE = /^\[(N\/A|Not Supported|Unknown Error|Insufficient Permissions|GPU requires reset|GPU is lost)\]$/i;

function count(raw: string | undefined): number | null {
  const v = (raw ?? '').trim();
  if (NO_VALUE.test(v) || !/^\d+$/.test(v)) return null;
  return Number(v);
}

function flag(raw: string | undefined): boolean | null {
  const v = (raw ?? '').trim().toLowerCase();
  if (v === 'yes' || v === '1') return true;
  if (v === 'no' || v === '0') return false;
  return null;
}

function rows(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('GPU-'))
    .map((l) => l.split(',').map((c) => c.trim()));
}

/**
 * Parses the HEALTH_QUERY answer. Lines that are not a card's (a warning
 * such as "Unable to determine the device handle for GPU …") are skipped:
 * a card that did not answer is simply absent.
 */
export function parseHealthCsv(text: string): CardReading[] {
  return rows(text).map(([uuid, busId, ecc, pending]) => ({
    uuid: uuid!,
    busId: busId ?? '',
    eccUncorrected: count(ecc),
    retirementPending: flag(pending),
  }));
}

/** Parses the REMAP_QUERY answer: whether each card's row remapper has failed (null where it has none). */
export function parseRemapCsv(text: string): Map<string, boolean | null> {
  return new Map(rows(text).map(([uuid, failure]) => [uuid!, flag(failure)]));
}
