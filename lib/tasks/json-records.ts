// Reading JSON task files record by record, remembering the line each record
// starts on, so that a bad record can be skipped and reported as file:line
// instead of failing the whole file.
//
// Two layouts cover every CLUE/FewCLUE file:
//   - JSON Lines: one value per line (FewCLUE, CLUE classification files),
//     streamed line by line, so a training file may have any size;
//   - JSON values: one or more top-level values spread over any number of
//     lines (pretty-printed CLUENER copies, C3's whole-file array, CMRC2018's
//     SQuAD object). Such a file is one JSON document, read whole (up to
//     MAX_WHOLE_FILE_CHARS); each value's extent is found by bracket
//     matching, so a broken record costs only itself.

import { MAX_LINE_BYTES, type TextLine } from '../data/data-file.js';

/** A record's raw JSON value, or why it could not be parsed, with its 1-based first line. */
export type RawRecord = { line: number; value: unknown } | { line: number; error: string };

/** Files read whole are capped well below V8's ~512 Mi-character string limit. */
export const MAX_WHOLE_FILE_CHARS = 256 << 20;

/** A file in a read-whole layout that is too large to be read whole. */
export class WholeFileTooLargeError extends Error {}

const tooLong = `line longer than ${MAX_LINE_BYTES} bytes`;

/** One value per non-blank line; a batch of records per batch of lines. */
export async function* jsonLines(batches: AsyncIterable<TextLine[]>): AsyncGenerator<RawRecord[]> {
  for await (const batch of batches) {
    const records: RawRecord[] = [];
    for (const { line, text, tooLong: dropped } of batch) {
      if (dropped) {
        records.push({ line, error: tooLong });
        continue;
      }
      const trimmed = text.trim();
      if (trimmed === '') continue;
      try {
        records.push({ line, value: JSON.parse(trimmed) });
      } catch (err) {
        records.push({ line, error: `not valid JSON (${(err as Error).message})` });
      }
    }
    yield records;
  }
}

/** The whole file as one string (lines joined by '\n', so line numbers stay), for the read-whole layouts. */
export async function wholeText(batches: AsyncIterable<TextLine[]>): Promise<string> {
  const parts: string[] = [];
  let chars = 0;
  const readWhole = 'a file in this layout is one JSON document, read whole (JSON Lines files are streamed at any size)';
  for await (const batch of batches) {
    for (const { line, text, tooLong: dropped } of batch) {
      if (dropped) throw new WholeFileTooLargeError(`line ${line}: ${tooLong}; ${readWhole}`);
      chars += text.length + 1;
      if (chars > MAX_WHOLE_FILE_CHARS) throw new WholeFileTooLargeError(`larger than ${MAX_WHOLE_FILE_CHARS} characters; ${readWhole}`);
      parts.push(text);
    }
  }
  return parts.join('\n');
}

/** Index just past the JSON value starting at `start` (bracket matching that skips strings). */
function valueEnd(text: string, start: number): number {
  const first = text[start];
  if (first === '{' || first === '[') {
    let depth = 0;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (c === '"') {
        for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      } else if (c === '{' || c === '[') {
        depth++;
      } else if (c === '}' || c === ']') {
        if (--depth === 0) return i + 1;
      }
    }
    return text.length;
  }
  if (first === '"') {
    let i = start + 1;
    for (; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    return Math.min(i + 1, text.length);
  }
  let i = start;
  while (i < text.length && !/[\s,\]}]/.test(text[i])) i++;
  return Math.max(i, start + 1);
}

/** Scans top-level values (or, inside an array, its elements) with their first lines. */
class ValueScanner {
  private pos = 0;
  private line = 1;

  constructor(private readonly text: string) {}

  /** Skips whitespace (and, between array elements, one comma); returns the next character or ''. */
  skip(comma = false): string {
    const { text } = this;
    for (; this.pos < text.length; this.pos++) {
      const c = text[this.pos];
      if (c === '\n') this.line++;
      else if (!(c === ' ' || c === '\t' || c === '\r' || (comma && c === ','))) break;
    }
    return this.pos < text.length ? text[this.pos] : '';
  }

  /** Reads the value at the current position. */
  next(): RawRecord {
    const { text } = this;
    const start = this.pos;
    const line = this.line;
    const end = valueEnd(text, start);
    for (let i = start; i < end; i++) if (text.charCodeAt(i) === 10) this.line++;
    this.pos = end;
    try {
      return { line, value: JSON.parse(text.slice(start, end)) };
    } catch (err) {
      return { line, error: `not valid JSON (${(err as Error).message})` };
    }
  }

  enterArray(): void {
    this.pos++; // past '['
  }

  leaveArray(): void {
    this.pos++; // past ']'
  }
}

/**
 * The records of a multi-line JSON file: the elements of a top-level array
 * when `arrayOfRecords(first)` says the file is one (checked on the array's
 * first element, unparsed text given), else each top-level value (concatenated
 * objects, which also covers JSON Lines).
 */
export function* jsonValues(
  text: string,
  arrayOfRecords: (firstElement: RawRecord) => boolean = () => true,
): Generator<RawRecord> {
  const scanner = new ValueScanner(text);
  let c = scanner.skip();
  if (c === '[') {
    // Peek at the first element to decide between "array of records" and "a record that is an array".
    const probe = new ValueScanner(text);
    probe.skip();
    probe.enterArray();
    const firstChar = probe.skip();
    const isArrayOfRecords = firstChar === ']' || arrayOfRecords(probe.next());
    if (isArrayOfRecords) {
      scanner.enterArray();
      for (c = scanner.skip(true); c !== '' && c !== ']'; c = scanner.skip(true)) yield scanner.next();
      if (c === ']') scanner.leaveArray();
      c = scanner.skip();
      if (c !== '') yield { line: scanner.next().line, error: 'unexpected text after the top-level array' };
      return;
    }
  }
  for (; c !== ''; c = scanner.skip(true)) yield scanner.next();
}

/** 1-based line of character `index` in `text`. */
export function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < index; i = text.indexOf('\n', i + 1)) line++;
  return line;
}
