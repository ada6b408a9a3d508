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
 * Replaces, in captured output (a stream's text: stream()), a secret's value and the forms a job
 * most often prints it in by accident: the value itself (one trailing
 * newline dropped, as a file written by `echo` has), each long line of a
 * multi-line value, and its base64 (padded or not, with or without that
 * newline, and base64url). Each becomes `[secret:<name>]`. Longer forms are
 * tried first, so no fragment of one survives a shorter match.
 */
export class SecretRedactor {
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
      // A form spanning lines is redacted by its lines: no form holds a newline, so a newline ends every match (stream()).
      for (const f of forms) if (f.length >= SECRET_MIN_LENGTH && !f.includes('\n') && !names.has(f)) names.set(f, `[secret:${name}]`);
    }
    if (names.size === 0) return null;
    const alternatives = [...names.keys()].sort((a, b) => b.length - a.length);
    return new SecretRedactor(new RegExp(alternatives.map(escapeRegExp).join('|'), 'g'), names, alternatives[0]!.length);
  }

  private constructor(
    private readonly pattern: RegExp,
    private readonly names: ReadonlyMap<string, string>,
    /** The longest form's length: no match is longer. */
    private readonly longest: number,
  ) {}

  /**
   * Redaction of one output stream's text before it is cut into lines, so a
   * value of any length, or one a line cut would split, is still found
   * whole. Each push returns the text that is final: what no later text can
   * make part of a match, i.e. up to the last newline, or all but the last
   * `longest - 1` characters; the rest is held until more comes or the
   * stream ends. Its output depends only on the stream's text, never on how
   * it was chunked (a resumed capture skips exactly the records it stored).
   */
  stream(): TextFilter {
    let held = '';
    const pass = (text: string, final: boolean): string => {
      const all = held + text;
      let safe = final ? all.length : Math.max(all.lastIndexOf('\n') + 1, all.length - (this.longest - 1));
      // Never hold back half of a surrogate pair: re-encoded alone, it would become U+FFFD.
      if (safe > 0 && safe < all.length && /[\uD800-\uDBFF]/.test(all[safe - 1]!)) safe -= 1;
      let out = '';
      let cursor = 0;
      this.pattern.lastIndex = 0;
      for (let m = this.pattern.exec(all); m !== null && m.index < safe; m = this.pattern.exec(all)) {
        out += all.slice(cursor, m.index) + this.names.get(m[0])!;
        cursor = m.index + m[0].length;
      }
      const end = Math.max(cursor, safe);
      held = all.slice(end);
      return out + all.slice(cursor, end);
    };
    return { push: (text) => pass(text, false), end: () => pass('', true) };
  }
}

/** A change to one stream's text made before it is cut into lines: push returns what is final, end the rest. */
export interface TextFilter {
  push(text: string): string;
  end(): string;
}
