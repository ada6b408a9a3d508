import { StringDecoder } from 'node:string_decoder';

/**
 * Lines longer than this (in UTF-16 code units) are cut into records of this
 * size, or one unit shorter where the cut would fall inside a surrogate pair:
 * a record always holds whole code points, so it encodes as valid UTF-8.
 */
export const MAX_LINE = 16 * 1024;

/** Where a record of `text` (at least MAX_LINE long) ends: never between the halves of a surrogate pair. */
function cutAt(text: string): number {
  const last = text.charCodeAt(MAX_LINE - 1);
  return last >= 0xd800 && last <= 0xdbff ? MAX_LINE - 1 : MAX_LINE;
}

/**
 * Turns one stream's bytes into line records. The records depend only on the
 * bytes, never on how they were chunked, so a capture resumed after a
 * restart can skip exactly the records it already stored.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(private readonly emit: (line: string) => void) {}

  push(bytes: Buffer): void {
    const text = this.pending + this.decoder.write(bytes);
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      this.emitLine(text.slice(start, nl));
      start = nl + 1;
    }
    this.pending = this.emitWhole(text.slice(start));
  }

  /** At the end of the stream, a last line without a newline is kept. */
  end(): void {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    if (rest.length > 0) this.emitLine(rest);
  }

  /**
   * Same cut as push(): whole records first, then the remainder (possibly
   * empty) with a trailing CR dropped.
   */
  private emitLine(line: string): void {
    const rest = this.emitWhole(line);
    this.emit(rest.endsWith('\r') ? rest.slice(0, -1) : rest);
  }

  /** Emits the full-size records at the start of `text`; returns what is left (shorter than MAX_LINE). */
  private emitWhole(text: string): string {
    let rest = text;
    while (rest.length >= MAX_LINE) {
      const n = cutAt(rest);
      this.emit(rest.slice(0, n));
      rest = rest.slice(n);
    }
    return rest;
  }
}
