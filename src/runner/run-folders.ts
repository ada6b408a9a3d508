import path from 'node:path';
import { type Config, ConfigError } from '../config.js';
import { sweepHeldSecrets } from './held-secrets.js';
import { ownFolder } from './host-folder.js';
import { prepareSecretFiles } from './secret-delivery.js';

/**
 * The host folders this node writes into for its runs, made Gantry's own
 * (0700, host-folder.ts) before it runs anything: GANTRY_SECRETS_RUN_DIR
 * (emptied of this node's leftovers) and GANTRY_NOTICE_DIR (kept: a notice
 * outlives a restart). One that is a link or another user's stops the start,
 * naming it.
 */
export async function prepareRunFolders(config: Config): Promise<void> {
  const node = config.node.name;
  const folders: [variable: string, prepare: () => Promise<void>][] = [
    [
      'GANTRY_SECRETS_RUN_DIR',
      async () => {
        await prepareSecretFiles(config.secrets.runDir, node);
        // Held values outlive a restart; none is needed longer than the longest run, with a day's margin.
        await sweepHeldSecrets(config.secrets.runDir, node, (config.policy.maxTimeoutSeconds + 86_400) * 1000);
      },
    ],
    [
      'GANTRY_NOTICE_DIR',
      async () => {
        await ownFolder(config.noticeDir);
        await ownFolder(path.join(config.noticeDir, node));
      },
    ],
  ];
  for (const [variable, prepare] of folders) {
    try {
      await prepare();
    } catch (err) {
      throw new ConfigError(variable, (err as Error).message);
    }
  }
}
