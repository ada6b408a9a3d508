/** Values shorter than this cannot be redacted without mangling ordinary output; a run refuses them. */
export const SECRET_MIN_LENGTH = 4;
/** Lines of a multi-line secret (a PEM key) at least this long are redacted on their own too. */
const SECRET_LINE_MIN_LENGTH = 8;

export interface NamedSecret {
  name: string;
  value: Buffer;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Replaces, in each captured line, a secret's value and the forms a job
 * most often prints it in by accident: the value itself (one trailing
 * newline dropped, as a file written by `echo` has), each long line of a
 * multi-line value, and its base64 (padded or not, with or without that
 * newline, and base64url). Each becomes `[secret:<name>]`. Longer forms are
 * tried first, so no fragment of one survives a shorter match.
 */
export class SecretRedactor {
  private constructor(
    private readonly pattern: RegExp,
    private readonly names: ReadonlyMap<string, string>,
  ) {}

  /** A redactor for these secrets, or null when there are none. */
  static of(secrets: readonly NamedSecret[]): SecretRedactor | null {
    const names = new Map<string, string>();
    for (const { name, value } of secrets) {
      const text = value.toString('utf8').replace(/\r?\n$/, '');
      const forms = new Set<string>([text]);
      const lines = text.split(/\r?\n/);
      if (lines.length > 1) for (const l of lines) if (l.length >= SECRET_LINE_MIN_LENGTH) forms.add(l);
      for (const raw of [text, `${text}\n`]) {
        const b64 = Buffer.from(raw, 'utf8').toString('base64');
        forms.add(b64);
        forms.add(b64.replace(/=+$/, ''));
        forms.add(Buffer.from(raw, 'utf8').toString('base64url'));
      }
      for (const f of forms) if (f.length >= SECRET_MIN_LENGTH && !names.has(f)) names.set(f, `[secret:${name}]`);
    }
    if (names.size === 0) return null;
    const alternatives = [...names.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    return new SecretRedactor(new RegExp(alternatives.join('|'), 'g'), names);
  }

  redact(line: string): string {
    this.pattern.lastIndex = 0;
    return this.pattern.test(line) ? line.replace(this.pattern, (m) => this.names.get(m)!) : line;
  }
}
