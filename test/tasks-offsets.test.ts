// Tokenizer character offsets: each token's [start, end) in the ORIGINAL text
// (UTF-16 indices), checked against offsets written out by hand, and the ids of
// the offsets path checked against encode() on many mixed strings.

import { describe, expect, it } from 'vitest';
import { SPECIAL_TOKENS, Tokenizer } from '../lib/data/tokenizer.js';

const VOCAB = [
  ...SPECIAL_TOKENS, // 0..4
  '今', '天', '气', '很', '好', '世', '界', '𠀀', // 5..12 (𠀀 U+20000, astral CJK)
  '，', '。', '!', ',', '-', '(', ')', '😀', // 13..20
  'un', '##aff', '##able', 'hello', 'world', 'cafe', 'ro', '##former', 'v', '##2', 'x', 'a', '##b',
];

const tok = Tokenizer.fromTokens(VOCAB);

/** Token strings with the text each offset range covers. */
function pieces(text: string, t: Tokenizer = tok) {
  const { ids, offsets } = t.encodeTextWithOffsets(text);
  return ids.map((id, i) => [t.idToToken(id), offsets[i][0], offsets[i][1], text.slice(offsets[i][0], offsets[i][1])]);
}

describe('Tokenizer.encodeTextWithOffsets', () => {
  it('gives CJK characters and punctuation one character each', () => {
    expect(pieces('今天，很好。')).toEqual([
      ['今', 0, 1, '今'],
      ['天', 1, 2, '天'],
      ['，', 2, 3, '，'],
      ['很', 3, 4, '很'],
      ['好', 4, 5, '好'],
      ['。', 5, 6, '。'],
    ]);
  });

  it('gives WordPiece pieces their own characters, without ##', () => {
    expect(pieces('unaffable roformer v2')).toEqual([
      ['un', 0, 2, 'un'],
      ['##aff', 2, 5, 'aff'],
      ['##able', 5, 9, 'able'],
      ['ro', 10, 12, 'ro'],
      ['##former', 12, 18, 'former'],
      ['v', 19, 20, 'v'],
      ['##2', 20, 21, '2'],
    ]);
  });

  it('points at the original characters when lower-casing and accent stripping changed them', () => {
    // 'É' and the decomposed 'e' + U+0301 are one character of the normalised word each.
    expect(pieces('HÉLLO Cafe\u0301!')).toEqual([
      ['hello', 0, 5, 'HÉLLO'],
      ['cafe', 6, 11, 'Cafe\u0301'],
      ['!', 11, 12, '!'],
    ]);
    expect(pieces('UnAffABLE')).toEqual([
      ['un', 0, 2, 'Un'],
      ['##aff', 2, 5, 'Aff'],
      ['##able', 5, 9, 'ABLE'],
    ]);
  });

  it('skips whitespace and dropped characters, keeping later offsets exact', () => {
    expect(pieces('  今\t\n天\u3000 hel\u200blo\u0000 x')).toEqual([
      ['今', 2, 3, '今'],
      ['天', 5, 6, '天'],
      ['hello', 8, 14, 'hel\u200blo'],
      ['x', 16, 17, 'x'],
    ]);
  });

  it('covers a whole unknown word with its [UNK]', () => {
    expect(pieces('今qqq天 unzzz')).toEqual([
      ['今', 0, 1, '今'],
      ['[UNK]', 1, 4, 'qqq'],
      ['天', 4, 5, '天'],
      ['[UNK]', 6, 11, 'unzzz'],
    ]);
  });

  it('spans both halves of astral characters', () => {
    expect(pieces('今𠀀天😀x')).toEqual([
      ['今', 0, 1, '今'],
      ['𠀀', 1, 3, '𠀀'],
      ['天', 3, 4, '天'],
      ['[UNK]', 4, 7, '😀x'], // an emoji is not punctuation: part of the word "😀x", unknown as a whole
    ]);
  });

  it('keeps literal special tokens whole', () => {
    expect(pieces('今[MASK]天[SEP]')).toEqual([
      ['今', 0, 1, '今'],
      ['[MASK]', 1, 7, '[MASK]'],
      ['天', 7, 8, '天'],
      ['[SEP]', 8, 13, '[SEP]'],
    ]);
  });

  it('splits punctuation out of a word that needed normalising', () => {
    // Upper case makes each word take the normalising path; '(' and ')' still split it.
    expect(pieces('AÉ(AB)')).toEqual([
      ['[UNK]', 0, 2, 'AÉ'],
      ['(', 2, 3, '('],
      ['a', 3, 4, 'A'],
      ['##b', 4, 5, 'B'],
      [')', 5, 6, ')'],
    ]);
  });

  it('encodeWithOffsets adds [CLS]/[SEP] at [0, 0] and truncates like encode()', () => {
    const r = tok.encodeWithOffsets('今天很好', 4);
    expect(r.ids).toEqual(tok.encode('今天很好', 4));
    expect(r.offsets).toEqual([
      [0, 0],
      [0, 1],
      [1, 2],
      [0, 0],
    ]);
    expect(() => tok.encodeWithOffsets('x', 1)).toThrow(RangeError);
  });

  it('gives exactly the ids of encodeText() on many mixed strings', () => {
    const alphabet = ['今', '天', '𠀀', '😀', 'un', 'aff', 'ABLE', 'É', 'e\u0301', ' ', '\t', '，', '!', '(', '[MASK]', '[', 'Σ', 'ΑΣ', '\u200b', 'İ', 'x', 'q', '２', '\u0000'];
    let seed = 12345;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const cased = Tokenizer.fromTokens(VOCAB, 'cased', { lowercase: false });
    for (let trial = 0; trial < 500; trial++) {
      let text = '';
      const n = 1 + rand(12);
      for (let k = 0; k < n; k++) text += alphabet[rand(alphabet.length)];
      for (const t of [tok, cased]) {
        const { ids, offsets } = t.encodeTextWithOffsets(text);
        expect(ids, JSON.stringify(text)).toEqual(t.encodeText(text));
        expect(offsets.length).toBe(ids.length);
        for (const [s, e] of offsets) {
          expect(0 <= s && s < e && e <= text.length, `${JSON.stringify(text)} [${s}, ${e})`).toBe(true);
        }
        // Offsets never go backwards.
        for (let i = 1; i < offsets.length; i++) expect(offsets[i][0]).toBeGreaterThanOrEqual(offsets[i - 1][0]);
      }
    }
  });
});
