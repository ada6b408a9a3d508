import fs from 'node:fs';
import path from 'node:path';
import { type Config, ConfigError } from '../config.js';
import { NODE_NAME_PATTERN } from '../model/node.js';

/** The file under the data dir that keeps this node's name when GANTRY_NODE_NAME is unset. */
export const NODE_ID_FILE = 'node-id';

/**
 * Settles this node's name. GANTRY_NODE_NAME, when set, is the name and
 * nothing is read or written. Otherwise the name is the one kept in
 * `<dataDir>/node-id`, written once at the first start and read at every
 * later one, so a new hostname (a recreated container, a renamed host) never
 * makes the node a stranger to its own jobs: reconcile would remove their
 * containers and the fleet would declare the old name lost.
 *
 * The first value is the hostname the config holds at that start, not a
 * generated id: an install that ran before this file existed was known by its
 * hostname, so its jobs, its `placement.node` pins, its drains and its
 * metrics keep naming it and no migration is needed; on a host whose name is
 * stable nothing changes at all. A generated id would rename every node of a
 * fleet on upgrade, and the old names' running jobs would be lost one lease
 * later.
 */
export function settleNodeName(config: Config): Config {
  if (config.node.nameFromEnv) return config;
  const name = keptNodeName(config.dataDir, config.node.name);
  return { ...config, node: { ...config.node, name } };
}

/**
 * The name kept in `dir/node-id`; where there is none yet, `first` is
 * written there and returned. The write is atomic and never replaces a
 * name: the name goes to a private temporary file that is then hard-linked
 * into place, which fails if another start linked one first (that one is
 * read instead). The data dir, if Gantry creates it, and the file are
 * Gantry's alone (0700, 0600).
 */
function keptNodeName(dir: string, first: string): string {
  const file = path.join(dir, NODE_ID_FILE);
  const existing = readNodeId(file);
  if (existing !== null) return existing;
  if (!NODE_NAME_PATTERN.test(first)) {
    throw new ConfigError(
      'GANTRY_NODE_NAME',
      `unset, and the hostname "${first}" is not a node name (letters, digits, "_", "." and "-", at most 253 characters): set GANTRY_NODE_NAME`,
    );
  }
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      writeSynced(tmp, `${first}\n`);
      fs.linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    fsyncDir(dir);
  } catch (err) {
    throw new ConfigError(
      'GANTRY_DATA_DIR',
      `cannot keep this node's name in ${file} (${(err as Error).message}): the data dir must be writable by Gantry and outlive it (a volume), or set GANTRY_NODE_NAME`,
    );
  }
  return readNodeId(file) ?? first;
}

/** Writes a new file of Gantry's alone (0600) and flushes it to disk. */
function writeSynced(file: string, text: string): void {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The name in `file`, or null if there is no such file (nor, maybe, its directory: making it says why not). */
function readNodeId(file: string): string | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new ConfigError(
      'GANTRY_DATA_DIR',
      `cannot read this node's name from ${file} (${(err as Error).message}): it must be a file Gantry can read (mode 0600, owned by Gantry's user), or set GANTRY_NODE_NAME`,
    );
  }
  const name = text.trim();
  if (!NODE_NAME_PATTERN.test(name)) {
    throw new ConfigError(
      'GANTRY_DATA_DIR',
      `${file} does not hold a node name (letters, digits, "_", "." and "-", at most 253 characters): put this node's name back in it, or set GANTRY_NODE_NAME`,
    );
  }
  return name;
}

/** Makes a new entry of `dir` durable: the name is kept only once the directory itself is on disk. */
function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
