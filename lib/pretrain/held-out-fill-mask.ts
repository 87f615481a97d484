// Fill-mask on text the model never trained on: lines of the corpus's held-out split
// (Corpus.heldOut(), disjoint from the training documents), one character of each
// masked, and where the right character ranks among the model's guesses. The
// pre-training demo ends with these, so that a newcomer sees what the model learned
// rather than the most frequent characters.
//
// Which character: any ideograph, or — given a segmenter — one inside a word of two or
// more characters, the rest of the word left visible (东[MASK] → 风): the classic
// fill-in-the-word test, which asks whether the model learned words. A character that
// is a word on its own (而, 又) is often a free choice between several right ones; the
// demo reports the rate over any ideograph beside it.

import type { Corpus } from '../data/corpus.js';
import { Random } from '../data/masking.js';
import type { Segmenter } from '../data/pipeline.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { TrainableEncoder } from '../model/model.js';
import { fillMask } from './fill-mask.js';

export interface HeldOutExample {
  /** The held-out line as it is in the corpus. */
  text: string;
  /** The same line with one character replaced by [MASK]. */
  masked: string;
  answer: string;
  /** 1 = the model's first guess; null when the answer is not a token of the vocab ([UNK]). */
  rank: number | null;
  /** The model's first guesses, most likely first. */
  top: Array<{ token: string; probability: number }>;
}

/** A CJK ideograph: the characters worth masking (punctuation is too easy to tell anything). */
const IDEOGRAPH = /\p{Script=Han}/u;

/** The 1-based rank of `answerId` among candidates sorted most likely first; null when absent. */
export function answerRank(candidates: ReadonlyArray<{ id: number }>, answerId: number): number | null {
  const index = candidates.findIndex((c) => c.id === answerId);
  return index < 0 ? null : index + 1;
}

/** The character positions of `text` that are ideographs inside a word of ≥ 2 characters of `words` (its segmentation). */
export function inWordPositions(text: string, words: readonly string[]): number[] {
  const positions: number[] = [];
  let at = 0;
  for (const word of words) {
    const chars = Array.from(word);
    if (chars.length >= 2) chars.forEach((c, i) => IDEOGRAPH.test(c) && positions.push(at + i));
    at += chars.length;
  }
  if (at !== Array.from(text).length) throw new Error(`internal: the words of "${text}" do not add up to it: ${words.join('|')}`);
  return positions;
}

/**
 * `text` with one ideograph, drawn by `random`, replaced by [MASK] — one inside a
 * multi-character word when `segment` is given; null when the line has none.
 */
export function maskOneCharacter(text: string, random: Random, segment?: Segmenter): { masked: string; answer: string } | null {
  const chars = Array.from(text);
  const positions = segment ? inWordPositions(text, segment(text)) : chars.flatMap((c, i) => (IDEOGRAPH.test(c) ? [i] : []));
  if (positions.length === 0) return null;
  const at = positions[random.int(positions.length)]!;
  const answer = chars[at]!;
  chars[at] = '[MASK]';
  return { masked: chars.join(''), answer };
}

/**
 * The first `count` held-out lines of `minChars`–`maxChars` characters, one ideograph
 * of each masked (drawn with `seed`; inside a word of `segment`'s when given), through
 * the model: the answer's rank and the top 5.
 */
export async function heldOutFillMask(
  model: TrainableEncoder,
  tokenizer: Tokenizer,
  corpus: Corpus,
  options: { count: number; seed: number; minChars?: number; maxChars?: number; segment?: Segmenter },
): Promise<HeldOutExample[]> {
  const { count, seed, minChars = 8, maxChars = 24, segment } = options;
  const random = new Random(seed);
  const examples: HeldOutExample[] = [];
  model.eval();
  for await (const doc of corpus.heldOut()) {
    const length = Array.from(doc.text).length;
    if (length < minChars || length > maxChars) continue;
    const drawn = maskOneCharacter(doc.text, random, segment);
    if (!drawn) continue;
    // Every token scored, so that the answer's rank is known however far down it is.
    const [prediction] = await fillMask(model, tokenizer, drawn.masked, tokenizer.size);
    const answerId = tokenizer.tokenToId(drawn.answer);
    const rank = answerId === tokenizer.unkId ? null : answerRank(prediction!.candidates, answerId);
    examples.push({ text: doc.text, ...drawn, rank, top: prediction!.candidates.slice(0, 5).map(({ token, probability }) => ({ token, probability })) });
    if (examples.length >= count) break;
  }
  return examples;
}
