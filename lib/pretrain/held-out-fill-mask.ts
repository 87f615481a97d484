// Fill-mask on text the model never trained on: lines of the corpus's held-out split
// (Corpus.heldOut(), disjoint from the training documents), one character of each
// masked, and where the right character ranks among the model's guesses. The
// pre-training demo ends with these, so that a newcomer sees what the model learned
// rather than the most frequent characters.

import type { Corpus } from '../data/corpus.js';
import { Random } from '../data/masking.js';
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

/** `text` with one ideograph, drawn by `random`, replaced by [MASK]; null when it has none. */
export function maskOneCharacter(text: string, random: Random): { masked: string; answer: string } | null {
  const chars = Array.from(text);
  const positions = chars.flatMap((c, i) => (IDEOGRAPH.test(c) ? [i] : []));
  if (positions.length === 0) return null;
  const at = positions[random.int(positions.length)]!;
  const answer = chars[at]!;
  chars[at] = '[MASK]';
  return { masked: chars.join(''), answer };
}

/**
 * The first `count` held-out lines of `minChars`–`maxChars` characters, one ideograph
 * of each masked (drawn with `seed`), through the model: the answer's rank and the top 5.
 */
export async function heldOutFillMask(
  model: TrainableEncoder,
  tokenizer: Tokenizer,
  corpus: Corpus,
  options: { count: number; seed: number; minChars?: number; maxChars?: number },
): Promise<HeldOutExample[]> {
  const { count, seed, minChars = 8, maxChars = 24 } = options;
  const random = new Random(seed);
  const examples: HeldOutExample[] = [];
  model.eval();
  for await (const doc of corpus.heldOut()) {
    const length = Array.from(doc.text).length;
    if (length < minChars || length > maxChars) continue;
    const drawn = maskOneCharacter(doc.text, random);
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
