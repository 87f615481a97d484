// Building a vocabulary from a corpus: count what BERT's basic tokenisation
// produces (CJK characters and punctuation, the characters inside words, whole
// words) and keep the most frequent, so that every word of the corpus can be
// WordPiece-encoded.

import { atomText, scan, type ScanSink } from './scanner.js';
import { SPECIAL_TOKENS } from './special-tokens.js';
import { MAX_CHARS_PER_WORD } from './wordpiece.js';

/** Counts the pieces of basic tokenisation. */
class CountSink implements ScanSink {
  readonly needsOrigins = false;
  readonly atoms = new Map<number, number>(); // CJK / punctuation code point → count
  readonly chars = new Map<number, number>(); // code points inside words → count
  readonly words = new Map<string, number>(); // multi-character words → count

  atom(cp: number): boolean {
    this.atoms.set(cp, (this.atoms.get(cp) ?? 0) + 1);
    return false;
  }

  word(s: string, start: number, end: number, cps: number): boolean {
    for (let i = start; i < end; ) {
      const cp = s.codePointAt(i)!;
      this.chars.set(cp, (this.chars.get(cp) ?? 0) + 1);
      i += cp > 0xffff ? 2 : 1;
    }
    if (cps > 1 && cps <= MAX_CHARS_PER_WORD) {
      const w = s.slice(start, end);
      this.words.set(w, (this.words.get(w) ?? 0) + 1);
    }
    return false;
  }

  special(): boolean {
    return false;
  }
}

/**
 * Builds a vocabulary (the token list of a VOCAB_FILE) from texts: the 5
 * special tokens first ([PAD] at 0), then CJK characters, punctuation and word
 * pieces by frequency (ties broken by token string), at most `size` entries in
 * all, each seen at least `minFrequency` times (default 1).
 *
 * Characters inside non-CJK words get both a word-initial entry ("a") and a
 * continuation entry ("##a"), so every word made of seen characters can be
 * WordPiece-encoded; multi-character words also get whole-word entries. When
 * `size` is too small for everything, these character-level entries are chosen
 * before whole words (by frequency within each group); the chosen entries are
 * then ordered by frequency.
 */
export async function buildVocab(
  texts: AsyncIterable<string> | Iterable<string>,
  options: { size: number; minFrequency?: number; lowercase?: boolean },
): Promise<string[]> {
  const { size } = options;
  const minFrequency = options.minFrequency ?? 1;
  const lowercase = options.lowercase ?? true;
  if (!Number.isInteger(size) || size < SPECIAL_TOKENS.length) {
    throw new RangeError(`buildVocab: size must be an integer ≥ ${SPECIAL_TOKENS.length}, got ${size}`);
  }
  if (!Number.isFinite(minFrequency) || minFrequency < 1) {
    throw new RangeError(`buildVocab: minFrequency must be ≥ 1, got ${minFrequency}`);
  }
  const counts = new CountSink();
  let index = 0;
  for await (const text of texts) {
    if (typeof text !== 'string') throw new TypeError(`buildVocab: text #${index} is not a string`);
    scan(text, lowercase, counts);
    index++;
  }

  // Character-level entries (needed to encode anything) and whole words.
  const basic = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, n: number) => map.set(key, (map.get(key) ?? 0) + n);
  for (const [cp, n] of counts.atoms) add(basic, atomText(cp, lowercase), n);
  for (const [cp, n] of counts.chars) {
    const s = String.fromCodePoint(cp);
    add(basic, s, n);
    add(basic, '##' + s, n);
  }
  const specials = new Set<string>(SPECIAL_TOKENS);
  const byFrequency = (a: [string, number], b: [string, number]) =>
    b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  const pick = (map: Map<string, number>, budget: number) =>
    [...map]
      .filter(([t, n]) => n >= minFrequency && !specials.has(t))
      .sort(byFrequency)
      .slice(0, Math.max(0, budget));

  let budget = size - SPECIAL_TOKENS.length;
  const chosen = pick(basic, budget);
  budget -= chosen.length;
  if (budget > 0) {
    for (const entry of pick(counts.words, budget)) if (!basic.has(entry[0])) chosen.push(entry);
  }
  chosen.sort(byFrequency);
  return [...SPECIAL_TOKENS, ...chosen.map(([t]) => t)];
}
