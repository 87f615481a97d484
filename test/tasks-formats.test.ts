// Task formats: every FewCLUE task's real files, hand-written fixtures in each
// CLUE-only format, bad records (skipped, file:line), wrong-format files (one
// error naming the format), unlabelled test files.

import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

import { buildVocab, Tokenizer } from '../lib/data/tokenizer.js';
import { loadTaskFile, readTaskFile, resolveTask, TaskFormatError, type LoadedTaskFile } from '../lib/tasks/load.js';
import { getTask } from '../lib/tasks/registry.js';
import type { Example } from '../lib/tasks/types.js';
import { FEWCLUE_DIR } from './fewclue.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FEWCLUE = FEWCLUE_DIR;
const CLUE = path.join(here, 'fixtures', 'clue');
const fewclue = (task: string, split: string) => path.join(FEWCLUE, task, `${split}.json`);
const fixture = (name: string) => path.join(CLUE, name);

let tok: Tokenizer;
beforeAll(async () => {
  // Characters of the fixtures plus a few words: enough that the fixtures' tokens are real ids.
  const texts = ['csol apple iphone vs tnews'];
  for (const f of ['tnews.json', 'cluener.json', 'cmrc2018.json', 'c3.json', 'chid.json', 'afqmc.json', 'cmnli.json', 'iflytek.json']) {
    texts.push(readFileSync(fixture(f), 'utf8'));
  }
  for (const task of ['tnews', 'bustm', 'cluewsc', 'chid']) texts.push(readFileSync(fewclue(task, 'train_few_all'), 'utf8').slice(0, 5000));
  tok = Tokenizer.fromTokens(await buildVocab(texts, { size: 3000 }));
});

function kindOf<K extends Example['kind']>(e: Example, kind: K): Example & { kind: K } {
  expect(e.kind).toBe(kind);
  return e as Example & { kind: K };
}

/** The text of each token of an encoded sequence. */
function tokens(ids: number[]): string[] {
  return ids.map((id) => tok.idToToken(id));
}

describe('FewCLUE: every task’s real files load', () => {
  // shared/data/README.md's table: train / dev / test record counts.
  const COUNTS: Record<string, [number, number, number]> = {
    tnews: [1185, 1098, 2010],
    iflytek: [3024, 1373, 1749],
    eprstmt: [160, 160, 610],
    csldcp: [2036, 2068, 1784],
    bustm: [160, 160, 1772],
    ocnli: [160, 160, 2520],
    csl: [160, 160, 2838],
    cluewsc: [160, 159, 976],
    chid: [202, 202, 2002],
  };
  const loaded: Record<string, LoadedTaskFile[]> = {};

  beforeAll(async () => {
    for (const name of Object.keys(COUNTS)) {
      const task = await resolveTask(name, fewclue(name, 'train_few_all'));
      loaded[name] = [];
      for (const split of ['train_few_all', 'dev_few_all', 'test_public']) loaded[name].push(await loadTaskFile(task, fewclue(name, split), tok));
    }
  }, 120_000);

  for (const [name, counts] of Object.entries(COUNTS)) {
    it(`${name}: ${counts.join(' / ')} records, no problems, every example labelled`, () => {
      const files = loaded[name];
      expect(files.map((f) => f.count)).toEqual(counts);
      expect(files.map((f) => f.examples.length)).toEqual(counts);
      expect(files.flatMap((f) => f.problems)).toEqual([]);
      for (const f of files) {
        for (const { example } of f.examples) {
          expect((example as { label: number }).label).toBeGreaterThanOrEqual(0);
          const seqs = example.kind === 'multiple-choice' ? example.choices : [example as { ids: number[]; typeIds: number[] }];
          for (const s of seqs) {
            expect(s.ids.length).toBeLessThanOrEqual(f.task.maxLength);
            expect(s.ids[0]).toBe(tok.clsId);
            expect(s.ids[s.ids.length - 1]).toBe(tok.sepId);
            expect(s.typeIds.length).toBe(s.ids.length);
          }
        }
      }
    });
  }

  it('tnews: fixed codes 100–116 without 105/111, described; labels read from integers', () => {
    const { task, examples } = loaded.tnews[0];
    expect(task.labels).toEqual(['100', '101', '102', '103', '104', '106', '107', '108', '109', '110', '112', '113', '114', '115', '116']);
    expect(task.labelDescriptions?.[task.labels.indexOf('116')]).toBe('news_game');
    // First train record: {"label": 100, "label_desc": "news_story", "sentence": "孩子跟谁睡，就是谁的孩子", …}
    const first = kindOf(examples[0].example, 'classification');
    expect(first.label).toBe(0);
    expect(tok.decode(first.ids)).toBe('孩子跟谁睡，就是谁的孩子');
    expect(examples[0].id).toBe(448);
    expect(examples[0].line).toBe(1);
  });

  it('iflytek and csldcp: labels derived from the training file, sorted', () => {
    expect(loaded.iflytek[0].task.labels).toEqual(Array.from({ length: 119 }, (_, i) => String(i)));
    // First train record: label 10 (社区服务).
    expect(kindOf(loaded.iflytek[0].examples[0].example, 'classification').label).toBe(10);
    const csldcp = loaded.csldcp[0].task.labels;
    const official = readFileSync(path.join(FEWCLUE, 'csldcp', 'labels_all.txt'), 'utf8').trim().split('\n').map((l) => l.trim());
    expect(csldcp).toHaveLength(67);
    expect([...csldcp].sort()).toEqual([...official].sort());
    expect(csldcp).toEqual([...csldcp].sort());
    // The last train record is 植物保护.
    const last = loaded.csldcp[0].examples.at(-1)!;
    expect(csldcp[kindOf(last.example, 'classification').label]).toBe('植物保护');
    expect(last.id).toBe(4972);
  });

  it('eprstmt, ocnli, bustm, csl, cluewsc: string labels in the fixed order', () => {
    // eprstmt train line 1 Negative; ocnli train line 1 neutral; bustm train line 1 "1"; cluewsc train line 1 "false".
    expect(kindOf(loaded.eprstmt[0].examples[0].example, 'classification').label).toBe(0);
    expect(loaded.ocnli[0].task.labels).toEqual(['entailment', 'neutral', 'contradiction']);
    expect(kindOf(loaded.ocnli[0].examples[0].example, 'classification').label).toBe(1);
    expect(kindOf(loaded.bustm[0].examples[0].example, 'classification').label).toBe(1);
    expect(kindOf(loaded.cluewsc[0].examples[0].example, 'classification').label).toBe(0);
    // Test splits are balanced: labels count equally.
    const counts = (f: LoadedTaskFile) => {
      const c = new Map<number, number>();
      for (const e of f.examples) c.set((e.example as { label: number }).label, (c.get((e.example as { label: number }).label) ?? 0) + 1);
      return [...c.values()];
    };
    expect(counts(loaded.bustm[2])).toEqual([886, 886]);
    expect(counts(loaded.ocnli[2])).toEqual([840, 840, 840]);
  });

  it('pairs are [CLS] a [SEP] b [SEP] with segment ids 0 then 1', () => {
    // bustm train line 1: 叫爸爸叫一声我听听 / 那你叫我一声爸爸
    const e = kindOf(loaded.bustm[0].examples[0].example, 'classification');
    const sep = e.ids.indexOf(tok.sepId);
    expect(tok.decode(e.ids.slice(1, sep))).toBe('叫爸爸叫一声我听听');
    expect(tok.decode(e.ids.slice(sep + 1))).toBe('那你叫我一声爸爸');
    expect(e.typeIds).toEqual([...Array(sep + 1).fill(0), ...Array(e.ids.length - sep - 1).fill(1)]);
  });

  it('csl: keywords then the abstract, longest-first truncation cuts the abstract', () => {
    const f = loaded.csl[0];
    const e = kindOf(f.examples[0].example, 'classification');
    expect(e.ids.length).toBe(f.task.maxLength); // the first abstract is long
    const sep = e.ids.indexOf(tok.sepId);
    expect(e.typeIds.filter((t) => t === 1).length).toBeGreaterThan(sep); // the abstract got the larger share
    expect(f.truncated).toBeGreaterThan(0);
  });

  it('cluewsc: the two spans are marked in the text', () => {
    // train line 1: span1 树叶 at 22, span2 他 at 30.
    const e = kindOf(loaded.cluewsc[0].examples[0].example, 'classification');
    expect(tok.decode(e.ids)).toContain('_树叶_飘入了树林，[他]走到');
  });

  it('chid (FewCLUE): 7 options, each the content with its idiom in the blank, the answer index', () => {
    const e = kindOf(loaded.chid[0].examples[0].example, 'multiple-choice');
    // train line 1: answer 1, candidates[1] = 谨小慎微, blank after 由无数个.
    expect(e.label).toBe(1);
    expect(e.choices).toHaveLength(7);
    expect(tok.decode(e.choices[1].ids)).toContain('都是由无数个谨小慎微累积而来');
    expect(tok.decode(e.choices[6].ids)).toContain('都是由无数个万人空巷累积而来');
  });
});

describe('CLUE classification files (JSON Lines, string labels)', () => {
  it('tnews: string codes map to the fixed labels', async () => {
    const r = await loadTaskFile(await resolveTask('tnews'), fixture('tnews.json'), tok);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([2, 9, 4]);
    expect(r.examples.map((e) => e.id)).toEqual([0, 1, 2]); // no id field: the record's index
  });

  it('iflytek: labels derived from this training file, sorted numerically', async () => {
    const task = await resolveTask('iflytek', fixture('iflytek.json'));
    expect(task.labels).toEqual(['2', '11', '110']);
    const r = await loadTaskFile(task, fixture('iflytek.json'), tok);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([1, 0, 2, 1]);
    // The derived task is plain JSON: it round-trips.
    expect(JSON.parse(JSON.stringify(task))).toEqual(task);
  });

  it('afqmc pairs', async () => {
    const r = await loadTaskFile(await resolveTask('afqmc'), fixture('afqmc.json'), tok);
    const e = kindOf(r.examples[2].example, 'classification');
    expect(e.label).toBe(1);
    expect(tokens(e.ids)).toEqual(['[CLS]', ...'借呗能提前还款吗', '[SEP]', ...'借呗可以提前还吗', '[SEP]']);
  });

  it('cmnli: a "-" label (no annotator agreement) is skipped and reported', async () => {
    const r = await loadTaskFile(await resolveTask('cmnli'), fixture('cmnli.json'), tok);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([1, 0, 2]);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].line).toBe(3);
    expect(r.problems[0].message).toMatch(/label "-" is not one of cmnli's labels/);
  });

  it('an unlabelled test file loads for prediction with label -1', async () => {
    const r = await loadTaskFile(await resolveTask('tnews'), fixture('tnews_test.json'), tok);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([-1, -1]);
    expect(r.problems).toEqual([]);
  });
});

describe('bad records and wrong formats', () => {
  it('skips each bad record, reporting file:line and why', async () => {
    const file = fixture('tnews_bad.json');
    const r = await loadTaskFile(await resolveTask('tnews'), file, tok);
    expect(r.examples.map((e) => e.line)).toEqual([1, 7]);
    expect(r.count).toBe(7);
    expect(r.problems.map((p) => [p.file, p.line])).toEqual([
      [file, 2],
      [file, 3],
      [file, 4],
      [file, 6],
      [file, 8],
    ]);
    expect(r.problems[0].message).toMatch(/field "sentence" must be a string, got number 12345/);
    expect(r.problems[1].message).toMatch(/not valid JSON/);
    expect(r.problems[2].message).toMatch(/label "105" is not one of tnews's labels/);
    expect(r.problems[3].message).toMatch(/expected a JSON object, got an array/);
    expect(r.problems[4].message).toMatch(/not valid JSON/);
  });

  it('a file of another format is one error naming the format expected and the file', async () => {
    const tnews = await resolveTask('tnews');
    const c3file = fixture('c3.json');
    const err = await loadTaskFile(tnews, c3file, tok).catch((e) => e);
    expect(err).toBeInstanceOf(TaskFormatError);
    expect(err.message).toContain(c3file);
    expect(err.message).toMatch(/not a tnews file \(expected JSON Lines, one object a line with "sentence" \(string\) and "label"\)/);

    const squad = await readTaskFile('cmrc2018', fixture('tnews.json')).catch((e) => e);
    expect(squad).toBeInstanceOf(TaskFormatError);
    expect(squad.message).toMatch(/tnews\.json: not a cmrc2018 file \(expected SQuAD JSON/);

    const c3 = await readTaskFile('c3', fixture('cluener.json')).catch((e) => e);
    expect(c3.message).toMatch(/not a c3 file \(expected one JSON array of C3 records/);

    // Labels of another task: every record fails, so the file is rejected as a whole.
    const wrongLabels = await loadTaskFile(await resolveTask('eprstmt'), fixture('tnews.json'), tok).catch((e) => e);
    expect(wrongLabels.message).toMatch(/not a eprstmt file .*label "102" is not one of eprstmt's labels \(Negative, Positive\)/);
  });

  it('a missing or empty file is a clear error', async () => {
    await expect(readTaskFile('tnews', fixture('nope.json'))).rejects.toThrow(/nope\.json: cannot read the tnews file/);
    await expect(readTaskFile('tnews', fixture('empty.json'))).rejects.toThrow(/empty\.json: not a tnews file .*the file holds no record/);
  });

  it('a task whose labels come from training data says so when none is given', async () => {
    await expect(resolveTask('iflytek')).rejects.toThrow(/iflytek: its labels come from the training file/);
    const task = getTask('csldcp');
    await expect(loadTaskFile(task as never, fewclue('csldcp', 'dev_few_all'), tok)).rejects.toThrow(/labels unknown/);
  });
});

describe('CLUE chid: several blanks per record, answers in a separate file', () => {
  it('makes one example per blank, the other blanks masked, answers from chid_answer.json', async () => {
    const task = await resolveTask('chid');
    const r = await loadTaskFile(task, fixture('chid.json'), tok);
    expect(r.examples.map((e) => e.id)).toEqual(['#idiom000000#', '#idiom000001#', '#idiom000002#']);
    expect(r.examples.map((e) => e.line)).toEqual([1, 1, 1]);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([1, 6, 3]);
    const first = kindOf(r.examples[0].example, 'multiple-choice');
    expect(first.choices).toHaveLength(7);
    expect(tokens(first.choices[1].ids)).toEqual([
      '[CLS]', ...'他做事总是一马当先，从不拖泥带水；而有人只会', '[MASK]', '[MASK]', '[MASK]', '[MASK]', ...'，等着好运上门。', '[SEP]',
    ]);
    // The second record's answer (9) is not a candidate index: skipped, reported at its line.
    expect(r.problems).toEqual([{ file: fixture('chid.json'), line: 2, message: expect.stringMatching(/answer of #idiom000003# .* must be a candidate index 0…1, got number 9/) }]);
  });

  it('loads without answers for prediction (label -1), with a warning', async () => {
    const r = await loadTaskFile(await resolveTask('chid'), fixture('chid_test.json'), tok);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([-1]);
    expect(r.warnings.join('\n')).toMatch(/no answers/);
  });

  it('FewCLUE chid: a record without exactly one blank or with an out-of-range answer is skipped', async () => {
    const r = await loadTaskFile(await resolveTask('chid'), fixture('fewclue_chid_bad.json'), tok);
    expect(r.examples.map((e) => e.id)).toEqual([3]);
    expect(r.problems.map((p) => p.line)).toEqual([1, 2]);
    expect(r.problems[0].message).toMatch(/exactly one #idiom# blank, found 0/);
  });

  it('keeps the blank inside the window when the passage is longer than maxLength', async () => {
    const long = '前'.repeat(300) + '#idiom#' + '后'.repeat(300);
    const file = path.join(CLUE, '..', 'chid-long.tmp.json');
    const { writeFileSync, rmSync } = await import('node:fs');
    writeFileSync(file, JSON.stringify({ id: 1, candidates: ['一马当先', '心猿意马'], content: long, answer: 0 }) + '\n');
    try {
      const r = await loadTaskFile(await resolveTask('chid'), file, tok, { maxLength: 32 });
      const e = kindOf(r.examples[0].example, 'multiple-choice');
      const text = tokens(e.choices[0].ids).join('');
      expect(e.choices[0].ids).toHaveLength(32);
      expect(text).toContain('一马当先');
      expect(text).toMatch(/^\[CLS\]前{13}一马当先后{13}\[SEP\]$/);
      expect(r.truncated).toBe(1);
    } finally {
      rmSync(file);
    }
  });
});

describe('c3: nested arrays', () => {
  it('one example per question, (context, question + option) per option, answer as option index', async () => {
    const r = await loadTaskFile(await resolveTask('c3'), fixture('c3.json'), tok);
    expect(r.examples.map((e) => e.id)).toEqual(['m32-39-0', 'd1-1-0', 'd1-1-2']);
    expect(r.examples.map((e) => e.line)).toEqual([2, 9, 9]);
    expect(r.examples.map((e) => (e.example as { label: number }).label)).toEqual([2, 0, 0]);
    const e = kindOf(r.examples[1].example, 'multiple-choice');
    expect(e.choices).toHaveLength(2);
    expect(tokens(e.choices[1].ids)).toEqual(['[CLS]', ...'今天天气很好。我们去公园吧。', '[SEP]', ...'天气怎么样?不好', '[SEP]']);
    expect(e.choices[1].typeIds.filter((t) => t === 1)).toHaveLength('天气怎么样?不好'.length + 1);
    // A wrong answer (医院 is no choice) costs only its question; a non-record element is reported too.
    expect(r.problems.map((p) => [p.line, p.message])).toEqual([
      [9, expect.stringMatching(/question 1: answer "医院" is not one of its choices/)],
      [18, expect.stringMatching(/expected \[\[context…\], \[\{question, choice, answer\}\], id\], got the string "not a record"/)],
    ]);
  });

  it('a test file without answers loads with label -1 and the question ids', async () => {
    const r = await loadTaskFile(await resolveTask('c3'), fixture('c3_test.json'), tok);
    expect(r.examples.map((e) => [e.id, (e.example as { label: number }).label])).toEqual([['0', -1]]);
  });
});

describe('cmrc2018: SQuAD JSON with character offsets', () => {
  it('[CLS] question [SEP] context [SEP], answers as token spans of the context', async () => {
    const r = await loadTaskFile(await resolveTask('cmrc2018'), fixture('cmrc2018.json'), tok);
    expect(r.examples.map((e) => e.id)).toEqual(['TRAIN_186_QUERY_0', 'TRAIN_186_QUERY_1', 'TRAIN_186_QUERY_2', 'DEV_1_QUERY_0', 'TEST_1_QUERY_0']);
    expect(r.examples.map((e) => e.line)).toEqual([14, 19, 24, 42, 43]);
    const q0 = kindOf(r.examples[0].example, 'span');
    const question = '范廷颂是什么时候被任为主教的？';
    expect(tokens(q0.ids.slice(0, question.length + 2))).toEqual(['[CLS]', ...question, '[SEP]']);
    expect(q0.typeIds[question.length + 2]).toBe(1);
    expect(q0.spans).toHaveLength(1);
    const [s] = q0.spans;
    expect(s.label).toBe(0);
    // The answer 1963年 is tokens "1963" + "年" of the context; they map back to exactly its characters.
    expect(q0.text.slice(q0.offsets[s.start][0], q0.offsets[s.end][1])).toBe('1963年');
    expect(tokens(q0.ids.slice(s.start, s.end + 1)).join('')).toBe('1963年');
    // Question tokens are not in the text: [0, 0].
    expect(q0.offsets.slice(0, question.length + 2).every(([a, b]) => a === 0 && b === 0)).toBe(true);
    expect(r.examples[0].answers).toEqual(['1963年']);

    // Three answers, two identical: two distinct spans, all three reference texts.
    const q1 = kindOf(r.examples[1].example, 'span');
    expect(q1.spans.map((x) => q1.text.slice(q1.offsets[x.start][0], q1.offsets[x.end][1]))).toEqual(['越南', '越南罗马天主教']);
    expect(r.examples[1].answers).toEqual(['越南', '越南', '越南罗马天主教']);

    // answer_start three characters off: the nearest occurrence of the text is used.
    const q2 = kindOf(r.examples[2].example, 'span');
    expect(q2.text.slice(q2.offsets[q2.spans[0].start][0], q2.offsets[q2.spans[0].end][1])).toBe('河内总教区');

    // An answer that is not in its context: the question is skipped, at the line of its id.
    expect(r.problems).toEqual([{ file: fixture('cmrc2018.json'), line: 29, message: expect.stringMatching(/TRAIN_186_QUERY_3.*no answer text occurs/) }]);

    // Mixed English and digits: "2023年" after "iPhone 15在".
    const dev = kindOf(r.examples[3].example, 'span');
    expect(dev.text.slice(dev.offsets[dev.spans[0].start][0], dev.offsets[dev.spans[0].end][1])).toBe('2023年');

    // A question without answers loads for prediction: no spans, no reference answers.
    const test = kindOf(r.examples[4].example, 'span');
    expect(test.spans).toEqual([]);
    expect(r.examples[4].answers).toBeUndefined();
  });
});

describe('cluener: JSON Lines, pretty-printed, or an array', () => {
  const expected = [
    ['company', '浙商银行'],
    ['name', '叶老桂'],
  ];

  function entityTexts(e: Example): string[][] {
    const s = kindOf(e, 'span');
    return s.spans
      .map((x) => [getTask('cluener').labels![x.label], s.text.slice(s.offsets[x.start][0], s.offsets[x.end][1])])
      .sort();
  }

  it('JSON Lines: end-inclusive character spans become exact token spans', async () => {
    const r = await loadTaskFile(await resolveTask('cluener'), fixture('cluener.json'), tok);
    expect(r.problems).toEqual([]);
    expect(entityTexts(r.examples[0].example)).toEqual(expected);
    const first = kindOf(r.examples[0].example, 'span');
    // 叶老桂 = characters 9..11 inclusive = tokens 10..12 ([CLS] is token 0).
    const name = first.spans.find((s) => s.label === 6)!;
    expect([name.start, name.end]).toEqual([10, 12]);
    expect(tokens(first.ids.slice(name.start, name.end + 1))).toEqual(['叶', '老', '桂']);
    // CSOL生化狂潮: an English word piece plus CJK.
    expect(entityTexts(r.examples[1].example)).toEqual([['game', 'CSOL生化狂潮']]);
    expect(entityTexts(r.examples[2].example)).toHaveLength(4);
  });

  it('pretty-printed multi-line JSON: same records, a bad one reported at its first line', async () => {
    const r = await loadTaskFile(await resolveTask('cluener'), fixture('cluener_pretty.json'), tok);
    expect(r.examples.map((e) => e.line)).toEqual([1, 16, 32]);
    expect(entityTexts(r.examples[0].example)).toEqual(expected);
    expect(entityTexts(r.examples[1].example)).toEqual([['game', 'CSOL生化狂潮']]);
    expect(r.problems).toEqual([{ file: fixture('cluener_pretty.json'), line: 24, message: expect.stringMatching(/\[5, 6\] \(end inclusive\) reads "置是", not "位置"$/) }]);
  });

  it('a whole-file array', async () => {
    const r = await loadTaskFile(await resolveTask('cluener'), fixture('cluener_array.json'), tok);
    expect(r.examples.map((e) => e.line)).toEqual([2, 4]);
    expect(entityTexts(r.examples[0].example)).toEqual(expected);
  });

  it('end-exclusive spans (the classic mix-up) are rejected, not silently shifted', async () => {
    const err = await loadTaskFile(await resolveTask('cluener'), fixture('cluener_exclusive.json'), tok).catch((e) => e);
    expect(err).toBeInstanceOf(TaskFormatError);
    expect(err.message).toMatch(/looks end-exclusive; CLUENER ends are inclusive/);
  });

  it('a test file without labels loads with no spans', async () => {
    const r = await loadTaskFile(await resolveTask('cluener'), fixture('cluener_test.json'), tok);
    expect(r.examples.map((e) => kindOf(e.example, 'span').spans)).toEqual([[], []]);
    expect(r.examples.map((e) => e.id)).toEqual([0, 1]);
  });
});
