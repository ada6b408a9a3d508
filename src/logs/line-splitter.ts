import { StringDecoder } from 'node:string_decoder';

/** Lines longer than this (in UTF-16 code units) are cut into records of this size. */
export const MAX_LINE = 16 * 1024;

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
    let rest = text.slice(start);
    while (rest.length >= MAX_LINE) {
      this.emit(rest.slice(0, MAX_LINE));
      rest = rest.slice(MAX_LINE);
    }
    this.pending = rest;
  }

  /** At the end of the stream, a last line without a newline is kept. */
  end(): void {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    if (rest.length > 0) this.emitLine(rest);
  }

  /**
   * Same cut as push(): whole MAX_LINE slices first, then the remainder
   * (possibly empty) with a trailing CR dropped.
   */
  private emitLine(line: string): void {
    let rest = line;
    while (rest.length >= MAX_LINE) {
      this.emit(rest.slice(0, MAX_LINE));
      rest = rest.slice(MAX_LINE);
    }
    this.emit(rest.endsWith('\r') ? rest.slice(0, -1) : rest);
  }
}
