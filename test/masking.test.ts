// Dynamic masking: the rates of each scheme, whole-word consistency, specials untouched.

import { describe, expect, it } from 'vitest';

import { maskSample, Random, type MaskingVocab } from '../lib/data/masking.js';

const vocab: MaskingVocab = { maskId: 4, size: 1000, specialIds: new Set([0, 1, 2, 3, 4]) };
const sample = (n: number) => [2, ...Array.from({ length: n }, (_, i) => 5 + (i % 900)), 3];

describe('token masking (BERT 15%, 80/10/10)', () => {
  it('targets ~15% of ordinary tokens; [MASK] 80%, random 10%, kept 10%', () => {
    const random = new Random(1);
    let tokens = 0;
    let targets = 0;
    let masked = 0;
    let kept = 0;
    let replaced = 0;
    for (let r = 0; r < 400; r++) {
      const ids = sample(100);
      const m = maskSample(ids, vocab, random);
      tokens += 100;
      targets += m.positions.length;
      m.positions.forEach((p, k) => {
        expect(m.labels[k]).toBe(ids[p]);
        if (m.inputIds[p] === 4) masked++;
        else if (m.inputIds[p] === ids[p]) kept++;
        else replaced++;
      });
      // [CLS] and [SEP] are never targets; non-targets are untouched
      expect(m.positions).not.toContain(0);
      expect(m.positions).not.toContain(101);
      ids.forEach((id, i) => {
        if (!m.positions.includes(i)) expect(m.inputIds[i]).toBe(id);
      });
    }
    expect(targets / tokens).toBeGreaterThan(0.14);
    expect(targets / tokens).toBeLessThan(0.16);
    expect(masked / targets).toBeGreaterThan(0.77);
    expect(masked / targets).toBeLessThan(0.83);
    expect(kept / targets).toBeGreaterThan(0.08);
    expect(kept / targets).toBeLessThan(0.12);
    // random replacements may by chance equal the original (counted as kept): ~10% minus a hair
    expect(replaced / targets).toBeGreaterThan(0.08);
    expect(replaced / targets).toBeLessThan(0.12);
  });

  it('draws fresh masks each time (dynamic), reproducible from the random state', () => {
    const ids = sample(60);
    const random = new Random(7);
    const a = maskSample(ids, vocab, random);
    const b = maskSample(ids, vocab, random);
    expect(a.positions).not.toEqual(b.positions);
    const again = new Random(7);
    expect(maskSample(ids, vocab, again)).toEqual(a);
  });

  it('always yields a target when there is an ordinary token, never a special one as replacement', () => {
    const random = new Random(3);
    for (let r = 0; r < 200; r++) {
      const m = maskSample([2, 77, 3], vocab, random);
      expect(m.positions).toEqual([1]);
      expect(m.labels).toEqual([77]);
    }
    for (let r = 0; r < 200; r++) {
      const m = maskSample(sample(50), vocab, random, { probability: 0.99 });
      m.inputIds.forEach((id, i) => {
        if (i > 0 && i < 51) expect([0, 1, 2, 3].includes(id)).toBe(false);
      });
    }
    expect(maskSample([2, 3], vocab, random).positions).toEqual([]);
  });
});

describe('whole-word masking (the authors\' 0.12 / 0.015 / 0.015)', () => {
  it('treats every token of a word alike, at ~15% of words', () => {
    const random = new Random(11);
    let words = 0;
    let targetWords = 0;
    let maskedWords = 0;
    for (let r = 0; r < 300; r++) {
      // words of 1–3 tokens
      const ids = [2];
      const starts = [false];
      for (let w = 0; w < 40; w++) {
        const length = 1 + (w % 3);
        for (let t = 0; t < length; t++) {
          ids.push(5 + ((w * 7 + t) % 900));
          starts.push(t === 0);
        }
      }
      ids.push(3);
      starts.push(false);
      const m = maskSample(ids, vocab, random, { scheme: 'whole-word' }, starts);
      const targeted = new Set(m.positions);
      let i = 1;
      while (i < ids.length - 1) {
        let end = i + 1;
        while (end < ids.length - 1 && !starts[end]) end++;
        const members = Array.from({ length: end - i }, (_, k) => i + k);
        const inWord = members.filter((p) => targeted.has(p)).length;
        expect(inWord === 0 || inWord === members.length).toBe(true);
        words++;
        if (inWord > 0) {
          targetWords++;
          if (members.every((p) => m.inputIds[p] === 4)) maskedWords++;
        }
        i = end;
      }
    }
    expect(targetWords / words).toBeGreaterThan(0.13);
    expect(targetWords / words).toBeLessThan(0.17);
    expect(maskedWords / targetWords).toBeGreaterThan(0.75); // 0.12 / 0.15 = 80%
  });

  it('needs one word-start flag per token', () => {
    expect(() => maskSample([2, 5, 3], vocab, new Random(1), { scheme: 'whole-word' }, [false])).toThrow(/wordStarts/);
  });
});
