// Task metrics, each as its benchmark defines it, all as fractions in [0, 1]:
//   accuracy                     classification, matching, NLI, multiple choice;
//   entity-level micro P/R/F1    CLUENER (an entity counts only if label, start and end all match);
//   EM and F1                    CMRC 2018, as its official evaluation script (cmrc2018_evaluate.py v5):
//                                lower-cased, stripped; EM after removing its punctuation list; F1 over
//                                the longest common substring of "mixed segments" (each CJK character
//                                and listed punctuation mark a segment, other runs split into words),
//                                best over the reference answers;
//   majority-class baseline      the accuracy of always predicting the training set's most frequent label.

import type { Task } from './registry.js';
import type { LoadedExample, Prediction } from './types.js';

export { predictionFromClassScores, predictionFromMultilabelScores, predictionFromOptionScores, predictionFromSpanScores } from './predictions.js';
export type { SpanScores, SpanDecodeOptions, SpanSource } from './predictions.js';

/** Fraction of labelled examples (gold ≥ 0) predicted right; NaN when none is labelled. */
export function accuracy(predicted: readonly number[], gold: readonly number[]): number {
  if (predicted.length !== gold.length) throw new RangeError(`accuracy: ${predicted.length} predictions for ${gold.length} gold labels`);
  let right = 0;
  let n = 0;
  for (let i = 0; i < gold.length; i++) {
    if (gold[i] < 0) continue; // unlabelled (test) example
    n++;
    if (predicted[i] === gold[i]) right++;
  }
  return n === 0 ? NaN : right / n;
}

/** The most frequent label of a list (ties: the lowest label), ignoring unlabelled (-1) entries. */
export function majorityClass(labels: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const l of labels) if (l >= 0) counts.set(l, (counts.get(l) ?? 0) + 1);
  if (counts.size === 0) throw new RangeError('majorityClass: no labelled example');
  let best = -1;
  let bestCount = -1;
  for (const [label, count] of counts) {
    if (count > bestCount || (count === bestCount && label < best)) {
      best = label;
      bestCount = count;
    }
  }
  return best;
}

/** Accuracy of always answering `majority` (by default the majority class of `gold` itself). */
export function majorityAccuracy(gold: readonly number[], majority = majorityClass(gold)): number {
  return accuracy(gold.map(() => majority), gold);
}

export interface PrecisionRecallF1 {
  precision: number;
  recall: number;
  f1: number;
  /** Matched items, predicted items, gold items. */
  correct: number;
  predicted: number;
  gold: number;
}

function prf(correct: number, predicted: number, gold: number): PrecisionRecallF1 {
  const precision = predicted === 0 ? 0 : correct / predicted;
  const recall = gold === 0 ? 0 : correct / gold;
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1, correct, predicted, gold };
}

export interface LabelledSpan {
  label: number;
  start: number;
  end: number;
}

/**
 * Entity-level micro precision/recall/F1 over examples: a predicted span is
 * correct when an identical (label, start, end) is among the example's gold
 * spans. Duplicates count once. Token or character spans alike, as long as
 * both sides use the same.
 */
export function spanF1(predicted: ReadonlyArray<readonly LabelledSpan[]>, gold: ReadonlyArray<readonly LabelledSpan[]>): PrecisionRecallF1 {
  if (predicted.length !== gold.length) throw new RangeError(`spanF1: ${predicted.length} predictions for ${gold.length} examples`);
  const key = (s: LabelledSpan) => `${s.label}:${s.start}:${s.end}`;
  let correct = 0;
  let nPredicted = 0;
  let nGold = 0;
  for (let i = 0; i < gold.length; i++) {
    const g = new Set(gold[i].map(key));
    const p = new Set(predicted[i].map(key));
    nGold += g.size;
    nPredicted += p.size;
    for (const k of p) if (g.has(k)) correct++;
  }
  return prf(correct, nPredicted, nGold);
}

/** Micro P/R/F1 of multi-label predictions over (example, label) pairs. */
export function multilabelF1(predicted: ReadonlyArray<readonly number[]>, gold: ReadonlyArray<readonly number[]>): PrecisionRecallF1 {
  const asSpans = (ls: readonly number[]) => ls.map((label) => ({ label, start: 0, end: 0 }));
  return spanF1(predicted.map(asSpans), gold.map(asSpans));
}

// ---------------------------------------------------------------------------
// CMRC 2018

/** The official script's punctuation list ('……' is two characters there and so never matches one: kept as is). */
const CMRC_PUNCTUATION = new Set([
  '-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
  '，', '。', '：', '？', '！', '“', '”', '；', '’', '《', '》', '·', '、',
  '「', '」', '（', '）', '－', '～', '『', '』',
]);

/** Python's str.strip() whitespace, then lower(). */
function cmrcNormalise(s: string): string {
  return s.trim().toLowerCase();
}

/**
 * The official mixed_segmentation(rm_punc=True): each CJK character (U+4E00–U+9FA5) and each
 * listed punctuation mark (removed here) is a segment; other runs are split into words as
 * nltk.word_tokenize would for typical answers (letters/digits with inner . , ' kept together,
 * every other symbol alone).
 */
export function cmrcSegments(text: string): string[] {
  const out: string[] = [];
  let run = '';
  const flush = () => {
    if (run) out.push(...(run.match(/[\p{L}\p{N}]+(?:[.,'][\p{L}\p{N}]+)*|\S/gu) ?? []));
    run = '';
  };
  for (const ch of cmrcNormalise(text)) {
    if (CMRC_PUNCTUATION.has(ch)) continue;
    if (/[\u4e00-\u9fa5]/.test(ch)) {
      flush();
      out.push(ch);
    } else {
      run += ch;
    }
  }
  flush();
  return out;
}

function withoutPunctuation(text: string): string {
  let out = '';
  for (const ch of cmrcNormalise(text)) if (!CMRC_PUNCTUATION.has(ch)) out += ch;
  return out;
}

/** Length of the longest common contiguous run of two segment lists (the script's find_lcs). */
function longestCommonRun(a: readonly string[], b: readonly string[]): number {
  let best = 0;
  let prev = new Array<number>(b.length + 1).fill(0);
  for (let i = 0; i < a.length; i++) {
    const row = new Array<number>(b.length + 1).fill(0);
    for (let j = 0; j < b.length; j++) {
      if (a[i] === b[j]) {
        row[j + 1] = prev[j] + 1;
        if (row[j + 1] > best) best = row[j + 1];
      }
    }
    prev = row;
  }
  return best;
}

/** 1 if the prediction equals one of the answers once both lose case, outer spaces and the listed punctuation. */
export function cmrcExactMatch(prediction: string, answers: readonly string[]): number {
  const p = withoutPunctuation(prediction);
  return answers.some((a) => withoutPunctuation(a) === p) ? 1 : 0;
}

/** The best F1 over the answers of the prediction's segments against each answer's. */
export function cmrcF1(prediction: string, answers: readonly string[]): number {
  const p = cmrcSegments(prediction);
  let best = 0;
  for (const answer of answers) {
    const a = cmrcSegments(answer);
    const common = longestCommonRun(a, p);
    if (common === 0) continue;
    const precision = common / p.length;
    const recall = common / a.length;
    best = Math.max(best, (2 * precision * recall) / (precision + recall));
  }
  return best;
}

/** Mean EM and F1 over questions (a question without a prediction scores 0, as in the official script). */
export function cmrcScores(predictions: ReadonlyArray<string | undefined>, answers: ReadonlyArray<readonly string[]>): { em: number; f1: number } {
  if (predictions.length !== answers.length) throw new RangeError(`cmrcScores: ${predictions.length} predictions for ${answers.length} questions`);
  let em = 0;
  let f1 = 0;
  for (let i = 0; i < answers.length; i++) {
    const p = predictions[i];
    if (p === undefined) continue;
    em += cmrcExactMatch(p, answers[i]);
    f1 += cmrcF1(p, answers[i]);
  }
  const n = answers.length;
  return n === 0 ? { em: NaN, f1: NaN } : { em: em / n, f1: f1 / n };
}

// ---------------------------------------------------------------------------
// A task's metrics from its examples and predictions

/**
 * The metrics `task.metrics` names, from loaded examples and one prediction
 * each (same order). Unlabelled examples are left out; for cmrc2018 a
 * question counts when it has reference answers, and its prediction is its
 * highest-scoring span.
 */
export function taskMetrics(task: Task, examples: readonly LoadedExample[], predictions: readonly Prediction[]): Partial<Record<'accuracy' | 'precision' | 'recall' | 'f1' | 'em', number>> {
  if (examples.length !== predictions.length) throw new RangeError(`taskMetrics: ${predictions.length} predictions for ${examples.length} examples`);
  const pairs = examples.map((e, i) => {
    const p = predictions[i];
    if (p.kind !== e.example.kind) throw new TypeError(`taskMetrics: a ${p.kind} prediction for a ${e.example.kind} example (${e.id})`);
    return [e, p] as const;
  });
  const head = task.head;
  if (head === 'classification' || head === 'multiple-choice') {
    const gold = pairs.map(([e]) => (e.example as { label: number }).label);
    const predicted = pairs.map(([, p]) => (p as { label: number }).label);
    return { accuracy: accuracy(predicted, gold) };
  }
  if (head === 'multilabel') {
    const r = multilabelF1(
      pairs.map(([, p]) => (p as { labels: number[] }).labels),
      pairs.map(([e]) => (e.example as { labels: number[] }).labels),
    );
    return { f1: r.f1, precision: r.precision, recall: r.recall };
  }
  // span
  if (task.metrics.includes('em')) {
    const withAnswers = pairs.filter(([e]) => referenceAnswers(e).length > 0);
    const predicted = withAnswers.map(([, p]) => {
      const spans = (p as Prediction & { kind: 'span' }).spans;
      return spans.length === 0 ? '' : spans.reduce((a, b) => (b.score > a.score ? b : a)).text;
    });
    return cmrcScores(predicted, withAnswers.map(([e]) => referenceAnswers(e)));
  }
  const r = spanF1(
    pairs.map(([, p]) => (p as Prediction & { kind: 'span' }).spans),
    pairs.map(([e]) => (e.example as { spans: LabelledSpan[] }).spans),
  );
  return { f1: r.f1, precision: r.precision, recall: r.recall };
}

/** An example's reference answers: the file's answer texts, else the texts of its gold spans. */
function referenceAnswers(e: LoadedExample): string[] {
  if (e.answers && e.answers.length > 0) return e.answers;
  const ex = e.example;
  if (ex.kind !== 'span') return [];
  return ex.spans.map((s) => ex.text.slice(ex.offsets[s.start][0], ex.offsets[s.end][1]));
}
