// Dynamic masking for MLM: drawn fresh every time a sample is used.
//
// Two schemes:
//   token       BERT's: each ordinary token is a target with probability 0.15; a
//               target becomes [MASK] 80%, a random token 10%, itself 10%.
//   whole-word  the RoFormerV2 authors' (spec §2): words come from a Chinese word
//               segmenter; per word, with probability 0.12 all its tokens become
//               [MASK], 0.015 they stay but are predicted, 0.015 they become random
//               tokens; other words are not targets (≈15% targets in all).

export type MaskingScheme = 'token' | 'whole-word';

export interface MaskingVocab {
  maskId: number;
  size: number;
  /** Ids never masked or drawn as random replacements ([PAD] [UNK] [CLS] [SEP] [MASK]). */
  specialIds: ReadonlySet<number>;
}

export interface MaskingOptions {
  scheme?: MaskingScheme;
  /** token scheme: share of tokens that are targets (default 0.15). */
  probability?: number;
}

export interface MaskedSample {
  /** The input ids with the replacements made. */
  inputIds: number[];
  /** Target positions (indices into inputIds) and the original ids there. */
  positions: number[];
  labels: number[];
}

/** mulberry32: a small, fast, seedable generator whose whole state is one uint32 (easy to checkpoint). */
export class Random {
  constructor(public state: number) {
    this.state = state >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

function randomOrdinaryId(vocab: MaskingVocab, random: Random): number {
  for (;;) {
    const id = random.int(vocab.size);
    if (!vocab.specialIds.has(id)) return id;
  }
}

/**
 * Masks one sample. `wordStarts` (whole-word scheme only) marks the tokens that
 * begin a word; continuation tokens share their word's fate. At least one target
 * is always drawn when the sample has an ordinary token, so no sample is wasted.
 */
export function maskSample(
  ids: readonly number[],
  vocab: MaskingVocab,
  random: Random,
  options: MaskingOptions = {},
  wordStarts?: readonly boolean[],
): MaskedSample {
  const scheme = options.scheme ?? 'token';
  const inputIds = ids.slice();
  const positions: number[] = [];
  const labels: number[] = [];
  const target = (i: number, replacement: 'mask' | 'random' | 'keep') => {
    positions.push(i);
    labels.push(ids[i]!);
    if (replacement === 'mask') inputIds[i] = vocab.maskId;
    else if (replacement === 'random') inputIds[i] = randomOrdinaryId(vocab, random);
  };

  if (scheme === 'token') {
    const p = options.probability ?? 0.15;
    for (let i = 0; i < ids.length; i++) {
      if (vocab.specialIds.has(ids[i]!) || random.next() >= p) continue;
      const r = random.next();
      target(i, r < 0.8 ? 'mask' : r < 0.9 ? 'random' : 'keep');
    }
  } else {
    if (!wordStarts || wordStarts.length !== ids.length) {
      throw new Error('whole-word masking needs one wordStarts flag per token');
    }
    let decision: 'mask' | 'random' | 'keep' | null = null;
    for (let i = 0; i < ids.length; i++) {
      if (vocab.specialIds.has(ids[i]!)) {
        decision = null;
        continue;
      }
      if (wordStarts[i]) {
        const r = random.next();
        decision = r < 0.12 ? 'mask' : r < 0.135 ? 'keep' : r < 0.15 ? 'random' : null;
      }
      if (decision) target(i, decision);
    }
  }

  if (positions.length === 0) {
    const ordinary = ids.map((id, i) => (vocab.specialIds.has(id) ? -1 : i)).filter((i) => i >= 0);
    if (ordinary.length > 0) target(ordinary[random.int(ordinary.length)]!, 'mask');
  }
  return { inputIds, positions, labels };
}
