import { parseArgs } from 'node:util';
import { generateToken, hashToken, SCOPES, TokenEntrySchema } from '../auth/tokens.js';

/**
 * Mints a token for GANTRY_TOKENS_FILE: prints the token (give it to the
 * client; it is not stored anywhere) and the entry to add to the file.
 *   npm run token -- --owner airflow --scopes submit,read,cancel
 */
const { values } = parseArgs({
  options: { owner: { type: 'string' }, scopes: { type: 'string', default: 'submit,read,cancel' } },
});
const entry = TokenEntrySchema.safeParse({
  owner: values.owner,
  scopes: (values.scopes ?? '').split(',').filter(Boolean),
  sha256: hashToken('placeholder'),
});
if (!entry.success) {
  process.stderr.write(
    `usage: npm run token -- --owner NAME [--scopes ${SCOPES.join(',')}]\n${entry.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}\n`,
  );
  process.exit(2);
}
const token = generateToken();
process.stdout.write(`token (shown once): ${token}\n`);
process.stdout.write(`tokens file entry:  ${JSON.stringify({ ...entry.data, sha256: hashToken(token) })}\n`);
