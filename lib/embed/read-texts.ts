// The texts `roformer embed` reads: plain text (one sentence a line) or JSONL (one
// object a line, the sentence in a string field). Every line must yield a text, so that
// output row i is input line i's; a line that does not is an error naming file and line.

import { textLines } from '../data/data-file.js';
import { jsonLines } from '../tasks/json-records.js';

export type TextFormat = 'text' | 'jsonl';

export class TextInputError extends Error {
  override name = 'TextInputError';
}

/** .jsonl/.json → jsonl; anything else → text. */
export function formatOf(path: string): TextFormat {
  return /\.jsonl?$/i.test(path) ? 'jsonl' : 'text';
}

export interface InputText {
  /** 1-based line in the file. */
  line: number;
  text: string;
}

export async function readTexts(path: string, format: TextFormat, field = 'text'): Promise<InputText[]> {
  const texts: InputText[] = [];
  const fail = (line: number, problem: string): never => {
    throw new TextInputError(`${path}:${line}: ${problem}`);
  };
  if (format === 'text') {
    // A final '\n' ends the last line; it does not start an empty one.
    const lines: Array<{ line: number; text: string; tooLong: boolean; invalidUtf8: boolean }> = [];
    for await (const batch of textLines(path)) lines.push(...batch);
    if (lines.length > 0 && lines[lines.length - 1]!.text === '') lines.pop();
    for (const { line, text, tooLong, invalidUtf8 } of lines) {
      if (tooLong) fail(line, 'line too long to read');
      if (invalidUtf8) fail(line, 'not valid UTF-8');
      if (text.trim() === '') fail(line, 'empty line (each line is one sentence: remove it or give it text)');
      texts.push({ line, text });
    }
  } else {
    for await (const records of jsonLines(textLines(path))) {
      for (const record of records) {
        if ('error' in record) fail(record.line, record.error);
        const { line, value } = record as { line: number; value: unknown };
        if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(line, `expected a JSON object, got ${JSON.stringify(value)?.slice(0, 60)}`);
        const text = (value as Record<string, unknown>)[field];
        if (typeof text !== 'string') {
          fail(line, text === undefined ? `no field "${field}" (choose the field with --field)` : `field "${field}" is ${JSON.stringify(text)?.slice(0, 60)}, not a string`);
        }
        texts.push({ line, text: text as string });
      }
    }
  }
  if (texts.length === 0) throw new TextInputError(`${path} has no texts to embed`);
  return texts;
}
