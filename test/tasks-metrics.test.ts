// Metrics against values computed by hand, and the decoding of head outputs
// into predictions.

import { describe, expect, it } from 'vitest';

import {
  accuracy,
  cmrcExactMatch,
  cmrcF1,
  cmrcScores,
  cmrcSegments,
  majorityAccuracy,
  majorityClass,
  multilabelF1,
  spanF1,
  taskMetrics,
} from '../lib/tasks/metrics.js';
import {
  predictionFromClassScores,
  predictionFromMultilabelScores,
  predictionFromOptionScores,
  predictionFromSpanScores,
} from '../lib/tasks/predictions.js';
import { getTask, type Task } from '../lib/tasks/registry.js';
import type { LoadedExample, Prediction } from '../lib/tasks/types.js';

describe('accuracy and the majority baseline', () => {
  it('counts only labelled examples', () => {
    expect(accuracy([1, 0, 2, 2], [1, 1, 2, -1])).toBeCloseTo(2 / 3, 12);
    expect(accuracy([0], [-1])).toBeNaN();
    expect(() => accuracy([0, 1], [0])).toThrow(RangeError);
  });

  it('majority class of the training labels, its accuracy on another set', () => {
    expect(majorityClass([0, 1, 1, 2, 1, 0, -1])).toBe(1);
    expect(majorityClass([2, 0, 2, 0])).toBe(0); // ties: the lowest label
    expect(majorityAccuracy([1, 0, 0, 2], 1)).toBe(0.25);
    expect(majorityAccuracy([1, 0, 0, 2])).toBe(0.5); // its own majority (0)
    expect(() => majorityClass([-1])).toThrow(/no labelled example/);
  });
});

describe('entity-level micro P/R/F1', () => {
  it('an entity counts only when label, start and end all match', () => {
    const gold = [
      [
        { label: 0, start: 1, end: 2 },
        { label: 1, start: 4, end: 5 },
      ],
      [{ label: 2, start: 0, end: 0 }],
    ];
    const predicted = [
      [
        { label: 0, start: 1, end: 2 }, // right
        { label: 1, start: 4, end: 6 }, // end off by one: wrong
      ],
      [
        { label: 2, start: 0, end: 0 }, // right
        { label: 0, start: 3, end: 3 }, // spurious
      ],
    ];
    const r = spanF1(predicted, gold);
    expect([r.correct, r.predicted, r.gold]).toEqual([2, 4, 3]);
    expect(r.precision).toBeCloseTo(0.5, 12);
    expect(r.recall).toBeCloseTo(2 / 3, 12);
    expect(r.f1).toBeCloseTo(4 / 7, 12);
    // No predictions at all: precision 0 (not NaN), F1 0.
    expect(spanF1([[]], [[{ label: 0, start: 0, end: 0 }]])).toMatchObject({ precision: 0, recall: 0, f1: 0 });
  });

  it('multi-label micro F1 over (example, label) pairs', () => {
    const r = multilabelF1([[0, 2], [1]], [[0], [1, 2]]);
    expect([r.correct, r.predicted, r.gold]).toEqual([2, 3, 3]);
    expect(r.f1).toBeCloseTo(2 / 3, 12);
  });
});

describe('CMRC 2018 EM and F1 (official script semantics)', () => {
  it('segments CJK characters one by one, other runs into words, dropping its punctuation list', () => {
    expect(cmrcSegments(' iPhone 15 Pro于2023年发布。')).toEqual(['iphone', '15', 'pro', '于', '2023', '年', '发', '布']);
    expect(cmrcSegments('《红楼梦》—曹雪芹')).toEqual(['红', '楼', '梦', '—', '曹', '雪', '芹']); // '—' is not in the list
  });

  it('EM after lower-casing, stripping and removing the listed punctuation', () => {
    expect(cmrcExactMatch('1963年。', ['1963年'])).toBe(1);
    expect(cmrcExactMatch('《红楼梦》', ['红楼梦'])).toBe(1);
    expect(cmrcExactMatch(' IPHONE ', ['iphone'])).toBe(1);
    expect(cmrcExactMatch('越南', ['越南罗马'])).toBe(0);
    expect(cmrcExactMatch('越南', ['河内', '越南'])).toBe(1);
  });

  it('F1 from the longest common contiguous run of segments, best over answers', () => {
    // 越南罗马天主教 vs 越南: common 2, P 2/7, R 1 → 4/9.
    expect(cmrcF1('越南罗马天主教', ['越南'])).toBeCloseTo(4 / 9, 12);
    // English words are single segments: common 2 (iphone 15), P 2/3, R 1 → 0.8.
    expect(cmrcF1('iPhone 15 Pro', ['iphone 15'])).toBeCloseTo(0.8, 12);
    // Best of two answers: 2023年 (F1 2/3) beats 发布会 (4/7).
    expect(cmrcF1('2023年发布', ['2023年', '发布会'])).toBeCloseTo(2 / 3, 12);
    // A substring, not a subsequence: 北京大学 vs 北大学 share only 大学 → P 1/2, R 2/3 → 4/7.
    expect(cmrcF1('北京大学', ['北大学'])).toBeCloseTo(4 / 7, 12);
    expect(cmrcF1('巴黎', ['越南'])).toBe(0);
    expect(cmrcF1('', ['越南'])).toBe(0);
  });

  it('averages over questions; a missing prediction scores 0', () => {
    const r = cmrcScores(['越南', '越南罗马天主教', undefined], [['越南'], ['越南'], ['河内']]);
    expect(r.em).toBeCloseTo(1 / 3, 12);
    expect(r.f1).toBeCloseTo((1 + 4 / 9 + 0) / 3, 12);
  });
});

describe('predictions from head outputs', () => {
  it('classification, multi-label (threshold 0) and multiple choice', () => {
    expect(predictionFromClassScores([0.1, 2, -1])).toEqual({ kind: 'classification', label: 1, scores: [0.1, 2, -1] });
    expect(predictionFromClassScores(new Float32Array([3, 3])).label).toBe(0);
    expect(predictionFromMultilabelScores([0.5, -0.1, 0, 2]).labels).toEqual([0, 3]);
    expect(predictionFromMultilabelScores([0.5, -0.1], -1).labels).toEqual([0, 1]);
    expect(predictionFromOptionScores([-3, -1, -2])).toEqual({ kind: 'multiple-choice', label: 1, scores: [-3, -1, -2] });
    expect(() => predictionFromClassScores([])).toThrow(RangeError);
  });

  // [CLS] a b c [SEP] over the text "a😀c": b is the astral character (two code units).
  const source = {
    text: 'a😀c',
    offsets: [
      [0, 0],
      [0, 1],
      [1, 3],
      [3, 4],
      [0, 0],
    ] as Array<[number, number]>,
  };
  function scores(): number[][][] {
    const s = [0, 1].map(() => Array.from({ length: 5 }, () => new Array<number>(5).fill(-Infinity)));
    s[0][1][2] = 2; // label 0: "a😀"
    s[0][2][1] = 9; // i > j: never a span
    s[0][0][1] = 9; // starts at [CLS]
    s[0][3][4] = 9; // ends at [SEP]
    s[1][3][3] = 0; // at the threshold, not above
    s[1][1][1] = 0.5; // label 1: "a"
    s[1][2][3] = -0.5; // below the threshold
    return s;
  }

  it('span scores: i ≤ j inside the text, above the threshold, highest first, mapped to characters', () => {
    const p = predictionFromSpanScores(scores(), source);
    expect(p.spans).toEqual([
      { label: 0, start: 1, end: 2, score: 2, charStart: 0, charEnd: 3, text: 'a😀' },
      { label: 1, start: 1, end: 1, score: 0.5, charStart: 0, charEnd: 1, text: 'a' },
    ]);
    // The same from a flat row-major buffer with its shape.
    const flat = Float32Array.from(scores().flat(2));
    expect(predictionFromSpanScores({ data: flat, shape: [2, 5, 5] }, source)).toEqual(p);
    expect(() => predictionFromSpanScores({ data: flat, shape: [2, 5, 4] }, source)).toThrow(/does not match/);
  });

  it('span options: threshold, longest span, single best', () => {
    expect(predictionFromSpanScores(scores(), source, { threshold: -1 }).spans.map((s) => s.text)).toEqual(['a😀', 'a', 'c', '😀c']);
    expect(predictionFromSpanScores(scores(), source, { maxSpanTokens: 1 }).spans.map((s) => s.text)).toEqual(['a']);
    const best = predictionFromSpanScores(scores(), source, { best: true, threshold: 100 });
    expect(best.spans.map((s) => s.text)).toEqual(['a😀']);
    // Everything masked: nothing, even in best mode.
    const masked = [[...Array(5)].map(() => new Array<number>(5).fill(-Infinity))];
    expect(predictionFromSpanScores(masked, source, { best: true }).spans).toEqual([]);
    // Scores padded beyond the example's tokens are ignored.
    const padded = [[...Array(7)].map(() => new Array<number>(7).fill(5))];
    expect(predictionFromSpanScores(padded, source).spans.map((s) => [s.start, s.end])).toEqual([
      [1, 1],
      [1, 2],
      [1, 3],
      [2, 2],
      [2, 3],
      [3, 3],
    ]);
  });
});

describe('taskMetrics', () => {
  const task = (name: string, labels: string[] = []): Task => ({ ...getTask(name), labels: getTask(name).labels ?? labels });

  it('classification: accuracy over labelled examples', () => {
    const examples: LoadedExample[] = [0, 1, 2, -1].map((label, i) => ({ example: { kind: 'classification', ids: [], typeIds: [], label }, line: i + 1, id: i }));
    const predictions = [0, 2, 2, 1].map((l) => predictionFromClassScores([0, 0, 0].map((_, k) => (k === l ? 1 : 0))));
    expect(taskMetrics(task('tnews'), examples, predictions)).toEqual({ accuracy: 2 / 3 });
    expect(() => taskMetrics(task('tnews'), examples, predictions.slice(1))).toThrow(RangeError);
  });

  it('cluener: entity micro F1 on token spans', () => {
    const ex = (spans: Array<[number, number, number]>): LoadedExample => ({
      example: { kind: 'span', ids: [], typeIds: [], offsets: [], text: '', spans: spans.map(([label, start, end]) => ({ label, start, end })) },
      line: 1,
      id: 0,
    });
    const pred = (spans: Array<[number, number, number]>): Prediction => ({
      kind: 'span',
      spans: spans.map(([label, start, end]) => ({ label, start, end, score: 1, charStart: 0, charEnd: 0, text: '' })),
    });
    const m = taskMetrics(task('cluener'), [ex([[0, 1, 2], [1, 4, 5]]), ex([[2, 0, 0]])], [pred([[0, 1, 2], [1, 4, 6]]), pred([[2, 0, 0], [0, 3, 3]])]);
    expect(m.f1).toBeCloseTo(4 / 7, 12);
    expect(m.precision).toBeCloseTo(0.5, 12);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
  });

  it('cmrc2018: EM/F1 of each question’s best span against its reference answers', () => {
    const e = (answers: string[]): LoadedExample => ({
      example: { kind: 'span', ids: [], typeIds: [], offsets: [], text: '', spans: [] },
      line: 1,
      id: 'q',
      answers,
    });
    const p = (...spans: Array<[string, number]>): Prediction => ({
      kind: 'span',
      spans: spans.map(([text, score]) => ({ label: 0, start: 0, end: 0, score, charStart: 0, charEnd: 0, text })),
    });
    const m = taskMetrics(task('cmrc2018'), [e(['越南']), e(['越南']), e([])], [p(['越南罗马天主教', 1], ['越南', 3]), p(['越南罗马天主教', 2]), p(['x', 1])]);
    // Question 3 has no reference: not counted. Q1 best span 越南 (EM 1, F1 1); Q2 (EM 0, F1 4/9).
    expect(m.em).toBeCloseTo(0.5, 12);
    expect(m.f1).toBeCloseTo((1 + 4 / 9) / 2, 12);
  });
});
