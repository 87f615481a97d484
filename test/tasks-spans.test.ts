// Span traps: CLUE's end-inclusive character spans must become exact token
// spans (end inclusive) through CJK, English WordPiece, punctuation and
// lower-casing, survive the round trip back to characters, and a span cut by
// truncation must be dropped and counted, never clipped.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { SPECIAL_TOKENS, Tokenizer } from '../lib/data/tokenizer.js';
import { charSpanToTokens, longestFirst } from '../lib/tasks/encode.js';
import { loadTaskFile, resolveTask } from '../lib/tasks/load.js';
import { predictionFromSpanScores } from '../lib/tasks/predictions.js';
import type { Example } from '../lib/tasks/types.js';

const VOCAB = [
  ...SPECIAL_TOKENS,
  ...'我在北京大学读书，用苹果手机和买了一台电脑。公司的发布',
  'i', '##phone', 'mac', '##book', 'pro', 'apple', '15', '(', ')', '！',
];
const tok = Tokenizer.fromTokens(VOCAB);
const dir = mkdtempSync(path.join(os.tmpdir(), 'tasks-spans-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, records: unknown[]): string {
  const file = path.join(dir, name);
  writeFileSync(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}

type SpanExample = Example & { kind: 'span' };

/** (type, token strings, text through the offsets) of each gold span. */
function spansOf(e: Example, labels: readonly string[]) {
  const s = e as SpanExample;
  return s.spans.map((x) => [
    labels[x.label],
    s.ids.slice(x.start, x.end + 1).map((id) => tok.idToToken(id)),
    s.text.slice(s.offsets[x.start][0], s.offsets[x.end][1]),
  ]);
}

describe('CLUENER spans → token spans', () => {
  it('maps end-inclusive character spans through CJK, WordPiece, upper case and punctuation', async () => {
    const text = '我用Apple的iPhone 15(Pro)！在北京大学读书。';
    // Character positions (end inclusive), written out: A=2…e=6, i=8…e=13, 15 = 15–16, Pro = 18–20, 北京大学 = 24–27.
    expect(text.slice(2, 7)).toBe('Apple');
    expect(text.slice(8, 17)).toBe('iPhone 15');
    expect(text.slice(18, 21)).toBe('Pro');
    expect(text.slice(24, 28)).toBe('北京大学');
    const file = write('ner.json', [
      {
        text,
        label: {
          company: { Apple: [[2, 6]] },
          game: { 'iPhone 15': [[8, 16]], Pro: [[18, 20]] },
          organization: { 北京大学: [[24, 27]] },
        },
      },
    ]);
    const task = await resolveTask('cluener');
    const r = await loadTaskFile(task, file, tok);
    expect(r.problems).toEqual([]);
    const e = r.examples[0].example as SpanExample;
    expect(spansOf(e, task.labels)).toEqual([
      ['company', ['apple'], 'Apple'],
      ['game', ['i', '##phone', '15'], 'iPhone 15'],
      ['game', ['pro'], 'Pro'],
      ['organization', ['北', '京', '大', '学'], '北京大学'],
    ]);
    // Token positions, end inclusive: [CLS] 我 用 apple 的 i ##phone 15 ( pro ) ！ 在 北 京 大 学 …
    expect(e.spans.map((s) => [s.start, s.end])).toEqual([
      [3, 3],
      [5, 7],
      [9, 9],
      [13, 16],
    ]);
  });

  it('an exclusive-end reading would be off by one token: the inclusive reading is the one used', () => {
    // The same span read both ways, straight through charSpanToTokens (exclusive [start, end) characters).
    const { offsets } = tok.encodeTextWithOffsets('在北京大学读书');
    expect(charSpanToTokens(offsets, 1, 4 + 1)).toEqual([1, 4]); // 北京大学: inclusive [1, 4] → exclusive end 5
    expect(charSpanToTokens(offsets, 1, 4)).toEqual([1, 3]); // the mix-up drops 学
  });

  it('drops and counts a span that truncation cuts, keeps the ones before it', async () => {
    const text = '我在北京大学读书，用苹果手机。';
    const file = write('ner-long.json', [
      { text, label: { organization: { 北京大学: [[2, 5]] }, company: { 苹果: [[10, 11]] } } },
    ]);
    const task = await resolveTask('cluener');
    // maxLength 10: [CLS] + 8 tokens (我在北京大学读书) + [SEP]; 苹果 (tokens 10–11) is cut off.
    const r = await loadTaskFile(task, file, tok, { maxLength: 10 });
    const e = r.examples[0].example as SpanExample;
    expect(e.ids).toHaveLength(10);
    expect(spansOf(e, task.labels)).toEqual([['organization', ['北', '京', '大', '学'], '北京大学']]);
    expect(r.droppedSpans).toBe(1);
    expect(r.truncated).toBe(1);
    // A span straddling the cut is dropped too, not clipped to its first half.
    const r2 = await loadTaskFile(task, file, tok, { maxLength: 6 });
    expect((r2.examples[0].example as SpanExample).spans).toEqual([]);
    expect(r2.droppedSpans).toBe(2);
  });

  it('offsets of tokens outside the text are [0, 0], so predictions never land there', async () => {
    const file = write('ner2.json', [{ text: '在北京', label: { address: { 北京: [[1, 2]] } } }]);
    const r = await loadTaskFile(await resolveTask('cluener'), file, tok);
    const e = r.examples[0].example as SpanExample;
    expect(e.offsets).toEqual([
      [0, 0],
      [0, 1],
      [1, 2],
      [2, 3],
      [0, 0],
    ]);
  });

  it('round trip: gold token spans decoded as predictions give back the file’s entities', async () => {
    const text = '用Apple的iPhone 15在北京发布';
    const file = write('ner3.json', [{ text, label: { company: { Apple: [[1, 5]] }, game: { 'iPhone 15': [[7, 15]] }, address: { 北京: [[17, 18]] } } }]);
    const task = await resolveTask('cluener');
    const r = await loadTaskFile(task, file, tok);
    const e = r.examples[0].example as SpanExample;
    const L = e.ids.length;
    const scores = task.labels.map(() => Array.from({ length: L }, () => new Array<number>(L).fill(-5)));
    for (const s of e.spans) scores[s.label][s.start][s.end] = 3;
    const p = predictionFromSpanScores(scores, e);
    expect(p.spans.map((s) => [task.labels[s.label], s.text, s.charStart, s.charEnd - 1]).sort()).toEqual([
      ['address', '北京', 17, 18],
      ['company', 'Apple', 1, 5],
      ['game', 'iPhone 15', 7, 15],
    ]);
  });
});

describe('cmrc2018: truncation of the context', () => {
  it('an answer beyond the kept context is dropped and counted; the reference answer stays for EM/F1', async () => {
    const file = path.join(dir, 'squad.json');
    const context = '我在北京大学读书，用苹果手机。';
    writeFileSync(
      file,
      JSON.stringify({ data: [{ paragraphs: [{ context, qas: [{ id: 'q1', question: '用什么', answers: [{ text: '苹果手机', answer_start: 10 }] }] }] }] }),
    );
    const task = await resolveTask('cmrc2018');
    const full = await loadTaskFile(task, file, tok);
    const e = full.examples[0].example as SpanExample;
    expect(spansOf(e, task.labels)).toEqual([['answer', ['苹', '果', '手', '机'], '苹果手机']]);
    // [CLS] 用 什 么 [SEP] + 15 context tokens + [SEP] = 21 ≤ 512: nothing cut.
    expect(full.truncated).toBe(0);
    // maxLength 12: the question (3) stays, the context keeps 6 tokens; the answer (tokens 10–13) is lost.
    const cut = await loadTaskFile(task, file, tok, { maxLength: 12 });
    const c = cut.examples[0].example as SpanExample;
    expect(c.ids).toHaveLength(12);
    expect(c.spans).toEqual([]);
    expect(cut.droppedSpans).toBe(1);
    expect(cut.examples[0].answers).toEqual(['苹果手机']);
  });
});

describe('longest-first truncation', () => {
  it('trims the longer sequence first, then both alternately', () => {
    expect(longestFirst(10, 3, 20)).toEqual([10, 3]);
    expect(longestFirst(10, 3, 9)).toEqual([6, 3]);
    expect(longestFirst(3, 10, 9)).toEqual([3, 6]);
    expect(longestFirst(10, 10, 15)).toEqual([8, 7]);
    expect(longestFirst(12, 10, 15)).toEqual([8, 7]);
    for (const [a, b, budget] of [
      [100, 7, 61],
      [5, 5, 3],
      [0, 40, 10],
    ]) {
      const [ka, kb] = longestFirst(a, b, budget);
      expect(ka + kb).toBe(Math.min(a + b, budget));
      expect(ka).toBeLessThanOrEqual(a);
      expect(kb).toBeLessThanOrEqual(b);
    }
  });
});
