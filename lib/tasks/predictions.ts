// Head outputs → Predictions: argmax over classes or options, threshold-0
// labels for multi-label, and GlobalPointer span score matrices decoded into
// token spans and back into characters of the text through the tokenizer's
// offsets (Example.offsets).

import type { Prediction } from './types.js';

function argmax(scores: ArrayLike<number>): number {
  if (scores.length === 0) throw new RangeError('cannot predict from an empty score list');
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i] > scores[best]) best = i;
  return best;
}

/** Classification / pair matching: the label with the highest score (ties: the lowest index). */
export function predictionFromClassScores(scores: ArrayLike<number>): Prediction & { kind: 'classification' } {
  return { kind: 'classification', label: argmax(scores), scores: Array.from(scores) };
}

/** Multi-label (ZLPR): every label whose score is above `threshold` (0: the loss's own decision boundary). */
export function predictionFromMultilabelScores(scores: ArrayLike<number>, threshold = 0): Prediction & { kind: 'multilabel' } {
  const labels: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] > threshold) labels.push(i);
  return { kind: 'multilabel', labels, scores: Array.from(scores) };
}

/** Multiple choice: the option with the highest score. */
export function predictionFromOptionScores(scores: ArrayLike<number>): Prediction & { kind: 'multiple-choice' } {
  return { kind: 'multiple-choice', label: argmax(scores), scores: Array.from(scores) };
}

/**
 * GlobalPointer output for one example: per label an L × L matrix s(i, j),
 * nested ([labels][L][L], e.g. Tensor.toArray()) or flat row-major with its shape.
 */
export type SpanScores = ArrayLike<ArrayLike<ArrayLike<number>>> | { data: ArrayLike<number>; shape: readonly [number, number, number] };

export interface SpanDecodeOptions {
  /** Keep spans scoring above this (default 0, the ZLPR boundary). */
  threshold?: number;
  /**
   * Keep only the single best span, whatever its score (extractive reading
   * comprehension: every question has an answer). Default false.
   */
  best?: boolean;
  /** Longest span considered, in tokens (default: no limit). */
  maxSpanTokens?: number;
}

/** The part of an Example that maps token positions back to characters. */
export interface SpanSource {
  offsets: ReadonlyArray<readonly [number, number]>;
  text: string;
}

/**
 * Spans (label, i ≤ j) of the example's text scoring above the threshold,
 * highest first, each with its characters: [charStart, charEnd) are
 * offsets[i][0] and offsets[j][1], `text` the slice of the example's text.
 * Positions outside the text (special tokens, a question, padding beyond
 * the offsets) are never predicted.
 */
export function predictionFromSpanScores(scores: SpanScores, source: SpanSource, options: SpanDecodeOptions = {}): Prediction & { kind: 'span' } {
  const threshold = options.threshold ?? 0;
  const maxWidth = options.maxSpanTokens ?? Infinity;
  let labels: number;
  let size: number;
  let at: (label: number, i: number, j: number) => number;
  if ('shape' in scores && 'data' in scores) {
    const [nl, n1, n2] = scores.shape;
    if (n1 !== n2 || scores.data.length !== nl * n1 * n2) {
      throw new RangeError(`span scores: shape [${scores.shape.join(', ')}] does not match ${scores.data.length} values of [labels, L, L]`);
    }
    labels = nl;
    size = n1;
    const data = scores.data;
    at = (l, i, j) => data[(l * n1 + i) * n1 + j];
  } else {
    const nested = scores as ArrayLike<ArrayLike<ArrayLike<number>>>;
    labels = nested.length;
    size = labels > 0 ? nested[0].length : 0;
    at = (l, i, j) => nested[l][i][j];
  }
  const { offsets, text } = source;
  const length = Math.min(size, offsets.length);
  const inText = (t: number) => offsets[t][1] > offsets[t][0];

  type Found = { label: number; start: number; end: number; score: number };
  const found: Found[] = [];
  let top: Found | undefined;
  for (let l = 0; l < labels; l++) {
    for (let i = 0; i < length; i++) {
      if (!inText(i)) continue;
      for (let j = i; j < length && j - i < maxWidth; j++) {
        if (!inText(j)) break; // the text's tokens are contiguous: past its end nothing is in it
        const score = at(l, i, j);
        if (!(score > -Infinity)) continue; // masked (−inf) or NaN: never a span
        if (options.best) {
          if (!top || score > top.score) top = { label: l, start: i, end: j, score };
        } else if (score > threshold) {
          found.push({ label: l, start: i, end: j, score });
        }
      }
    }
  }
  const chosen = options.best ? (top ? [top] : []) : found.sort((a, b) => b.score - a.score);
  return {
    kind: 'span',
    spans: chosen.map((s) => {
      const charStart = offsets[s.start][0];
      const charEnd = offsets[s.end][1];
      return { ...s, charStart, charEnd, text: text.slice(charStart, charEnd) };
    }),
  };
}
