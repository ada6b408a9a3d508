/**
 * The NVIDIA driver's Xid reports as the kernel log carries them:
 * `NVRM: Xid (PCI:0000:00:07): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.`
 * The PCI address names the card (domain:bus:device); the number names the
 * fault (docs.nvidia.com/deploy/xid-errors).
 */
export interface XidEvent {
  /** The card's PCI address as `dddd:bb:dd` (lower case), comparable through `pciKey`. */
  pci: string;
  xid: number;
  /** The process the driver blamed, when it named one. */
  pid: number | null;
  process: string | null;
  /** The driver's own words after the pid and process name. */
  text: string;
}

const XID = /NVRM: Xid \(PCI:([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})(?:\.[0-7])?\): (\d+)(?:, (.*))?$/;
const PID = /^pid='?(<unknown>|\d+)'?(?:, |$)/;
const NAME = /^name='?([^,']*)'?(?:, |$)/;

/**
 * A PCI address reduced to what both spellings share: nvidia-smi prints an
 * 8-digit domain and the function (`00000000:00:07.0`), the kernel log a
 * 4-digit domain and none (`0000:00:07`).
 */
export function pciKey(address: string): string | null {
  const m = /^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})/.exec(address.trim());
  if (!m) return null;
  return `${m[1]!.slice(-4)}:${m[2]}:${m[3]}`.toLowerCase();
}

/** The Xid a kernel log line reports, or null for any other line. */
export function parseXidLine(line: string): XidEvent | null {
  const m = XID.exec(line.trimEnd());
  if (!m) return null;
  let rest = m[5] ?? '';
  let pid: number | null = null;
  let process: string | null = null;
  const p = PID.exec(rest);
  if (p) {
    pid = p[1] === '<unknown>' ? null : Number(p[1]);
    rest = rest.slice(p[0].length);
    const n = NAME.exec(rest);
    if (n) {
      process = n[1] === '<unknown>' || n[1] === '' ? null : n[1]!;
      rest = rest.slice(n[0].length);
    }
  }
  return { pci: `${m[1]!.slice(-4)}:${m[2]}:${m[3]}`.toLowerCase(), xid: Number(m[4]), pid, process, text: rest.trim() };
}

/**
 * The message of one /dev/kmsg record (`PRIORITY,SEQ,USEC,FLAGS;MESSAGE`),
 * or null for a continuation line (` KEY=VALUE`) or anything else.
 */
export function kmsgMessage(record: string): string | null {
  const semi = record.indexOf(';');
  if (semi <= 0 || record.startsWith(' ') || !/^\d+,\d+,\d+/.test(record)) return null;
  return record.slice(semi + 1);
}
