/**
 * Writes the README's configuration table from EnvSchema (src/config.ts),
 * between the two config-table marker comments in README.md.
 *
 *   npm run docs:config            rewrite the table
 *   npm run docs:config -- --check exit 1 when README.md is not what the schema gives
 *
 * Generated rather than hand-written and compared: each variable is then
 * described in one place, the schema, and the README cannot disagree with it
 * on anything: a test that parsed a hand-written table could compare names
 * and defaults, but not meanings. test/unit/config-docs.test.ts fails when
 * the committed README is out of date.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { EnvSchema } from '../src/config.js';

export const README_PATH = path.resolve(import.meta.dirname, '..', 'README.md');
export const BEGIN = '<!-- config-table:begin (generated from src/config.ts by `npm run docs:config`: edit the schema, not this table) -->';
export const END = '<!-- config-table:end -->';

const cell = (s: string) => s.replace(/\|/g, '\\|');

/** A default as an operator would write it: lists comma-separated, an empty list or map as "(none)". */
function formatDefault(name: string, schema: z.ZodType): string {
  if (schema instanceof z.ZodOptional) return '–';
  if (!(schema instanceof z.ZodDefault)) throw new Error(`${name} has neither a default nor .optional()`);
  const value: unknown = schema.def.defaultValue;
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : `\`${value.join(',')}\``;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    return entries.length === 0 ? '(none)' : `\`${entries.map(([k, v]) => `${k}=${String(v)}`).join(',')}\``;
  }
  return `\`${String(value)}\``;
}

/** The table, one row per variable in the schema's order; throws on a variable without a description. */
export function configTable(): string {
  const rows = Object.entries(EnvSchema.shape).map(([name, schema]) => {
    const meaning = schema.description;
    if (!meaning) throw new Error(`${name} has no .describe() in src/config.ts`);
    return `| \`${name}\` | ${cell(formatDefault(name, schema))} | ${cell(meaning)} |`;
  });
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** The README with the text between the markers replaced by the generated table. */
export function withConfigTable(readme: string): string {
  const begin = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`README.md lacks the markers ${BEGIN} … ${END}`);
  return `${readme.slice(0, begin + BEGIN.length)}\n${configTable()}\n${readme.slice(end)}`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const readme = fs.readFileSync(README_PATH, 'utf8');
  const generated = withConfigTable(readme);
  if (process.argv.includes('--check')) {
    if (generated !== readme) {
      process.stderr.write('docs:config: the configuration table in README.md is out of date; run `npm run docs:config`\n');
      process.exit(1);
    }
    process.stdout.write('docs:config: README.md matches src/config.ts\n');
  } else {
    fs.writeFileSync(README_PATH, generated);
    process.stdout.write(`docs:config: ${generated === readme ? 'README.md unchanged' : 'wrote README.md'}\n`);
  }
}
