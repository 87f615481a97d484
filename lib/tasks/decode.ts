// A head's raw outputs (Trainer.predict) → predictions in the task's terms: label
// indices, option indices, token spans mapped back to characters of the text.

import type { HeadPrediction, Tensor } from '../../bindings/native.js';
import type { Example, Prediction } from './types.js';

function rowsOf(t: Tensor): Float32Array[] {
  const [rows, cols] = t.shape as [number, number];
  const data = t.toArray() as Float32Array;
  return Array.from({ length: rows }, (_, r) => data.subarray(r * cols, (r + 1) * cols));
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * The predictions of one predict() output, one per example in batch order (the
 * examples it was collated from give span offsets and text). Classification: the
 * argmax; multilabel: every label scoring > 0; multiple choice: the best real option;
 * span: every entry scoring > 0, best first, mapped to characters of the text.
 */
export function decodePredictions(output: HeadPrediction, examples: readonly Example[]): Prediction[] {
  switch (output.kind) {
    case 'classification':
      return rowsOf(output.scores).map((row) => ({ kind: 'classification', label: argmax(row), scores: Array.from(row) }));
    case 'multilabel':
      return rowsOf(output.scores).map((row) => ({
        kind: 'multilabel',
        labels: Array.from(row.keys()).filter((i) => row[i]! > 0),
        scores: Array.from(row),
      }));
    case 'multiple-choice':
      return rowsOf(output.scores).map((row, e) => {
        const count = (examples[e] as Extract<Example, { kind: 'multiple-choice' }> | undefined)?.choices.length ?? row.length;
        const scores = Array.from(row.subarray(0, count));
        return { kind: 'multiple-choice', label: argmax(scores), scores };
      });
    case 'span': {
      const result: Array<Extract<Prediction, { kind: 'span' }>> = examples.map(() => ({ kind: 'span', spans: [] }));
      if (!output.spans || !output.spanScores) return result;
      const rows = output.spans.toArray() as BigInt64Array;
      const scores = output.spanScores.toArray() as Float32Array;
      for (let n = 0; n < scores.length; n++) {
        const [e, label, start, end] = [0, 1, 2, 3].map((c) => Number(rows[n * 4 + c]!)) as [number, number, number, number];
        const example = examples[e];
        if (!example || example.kind !== 'span') continue;
        const charStart = example.offsets[start]?.[0] ?? 0;
        const charEnd = example.offsets[end]?.[1] ?? charStart;
        result[e]!.spans.push({ label, start, end, score: scores[n]!, charStart, charEnd, text: example.text.slice(charStart, charEnd) });
      }
      for (const p of result) p.spans.sort((a, b) => b.score - a.score);
      return result;
    }
  }
}
