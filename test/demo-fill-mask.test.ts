// The pre-training demo's corpus and its closing fill-mask examples (issue 17, item 4):
// the held-out lines are never training lines, and the rank printed beside each
// example is where the right answer really stands among the model's guesses.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { Corpus } from '../lib/data/corpus.js';
import { ensureDemoCorpus, poemLines } from '../lib/data/demo-corpus.js';
import { Random } from '../lib/data/masking.js';
import { buildVocab, jiebaSegmenter, RoFormerV2, Tokenizer } from '../lib/index.js';
import { fillMask } from '../lib/pretrain/fill-mask.js';
import { answerRank, heldOutFillMask, inWordPositions, maskOneCharacter } from '../lib/pretrain/held-out-fill-mask.js';
import { DEMO_OVERRIDES } from '../lib/pretrain/config.js';

const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-${name}-`));

/** One pass over a corpus's training documents and its held-out ones, as texts. */
async function split(corpus: Corpus): Promise<{ train: string[]; heldOut: string[] }> {
  const train: string[] = [];
  for await (const doc of corpus.train()) {
    if (doc.position.epoch > 0) break;
    train.push(doc.text);
  }
  const heldOut: string[] = [];
  for await (const doc of corpus.heldOut()) heldOut.push(doc.text);
  return { train, heldOut };
}

describe('the demo corpus', () => {
  it('is clean lines of verse, each once, so that no held-out line is also a training line', async () => {
    const [path] = await ensureDemoCorpus(tmp('demo-corpus'));
    const lines = readFileSync(path!, 'utf8').split('\n').filter((l) => l.length > 0);
    expect(lines.length).toBeGreaterThan(100_000);
    expect(new Set(lines).size).toBe(lines.length);
    for (const line of lines.slice(0, 2000)) expect(line).toMatch(/^[\p{Script=Han}，、；：。！？]{6,30}$/u);

    // The demo's own split (its evalFraction): disjoint by text, and together the whole corpus.
    const corpus = await Corpus.open({ paths: [path!], evalFraction: DEMO_OVERRIDES.evalFraction });
    const { train, heldOut } = await split(corpus);
    expect(heldOut.length).toBeGreaterThan(100);
    const trained = new Set(train);
    expect(heldOut.filter((l) => trained.has(l))).toEqual([]);
    expect(train.length + heldOut.length).toBe(lines.length);
  });

  it('cuts a poem into its lines, keeping the clean ones of 6–30 characters', () => {
    expect(poemLines(['明月几时有？把酒问青天。', '不知天上宫阙，今夕是何年。'])).toEqual(['明月几时有？', '把酒问青天。', '不知天上宫阙，今夕是何年。']);
    // stage directions, quotes, too short, too long, not a list
    expect(poemLines(['抵多少"十年窗下无人问"！（末云住）。', '好。', `${'长'.repeat(31)}。`])).toEqual([]);
    expect(poemLines('明月几时有？')).toEqual([]);
  });
});

describe('held-out fill-mask', () => {
  it('masks one ideograph, never punctuation; a line without one gives null', () => {
    const random = new Random(3);
    for (let i = 0; i < 50; i++) {
      const { masked, answer } = maskOneCharacter('春风，又绿。', random)!;
      expect('春风又绿').toContain(answer);
      expect(masked.replace('[MASK]', answer)).toBe('春风，又绿。');
      expect(masked.split('[MASK]').length).toBe(2);
    }
    expect(maskOneCharacter('，。！', random)).toBeNull();
  });

  it('given a segmenter, masks a character inside a word of two or more, never a one-character word', () => {
    // 春风 | ， | 又 | 绿 | 江南岸 | 。 — as a segmenter might cut it
    const segment = () => ['春风', '，', '又', '绿', '江南岸', '。'];
    expect(inWordPositions('春风，又绿江南岸。', segment())).toEqual([0, 1, 5, 6, 7]);
    const random = new Random(4);
    const answers = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const { masked, answer } = maskOneCharacter('春风，又绿江南岸。', random, segment)!;
      expect(masked.replace('[MASK]', answer)).toBe('春风，又绿江南岸。');
      answers.add(answer);
    }
    expect([...answers].sort()).toEqual(['南', '岸', '春', '江', '风'].sort());
    // only one-character words: nothing to mask
    expect(maskOneCharacter('又绿。', random, () => ['又', '绿', '。'])).toBeNull();
    // a segmentation that does not add up to the text is a bug, said so
    expect(() => inWordPositions('春风又绿', ['春风'])).toThrow(/do not add up/);
  });

  it('ranks the answer among candidates sorted most likely first', () => {
    const candidates = [{ id: 7 }, { id: 3 }, { id: 9 }];
    expect(answerRank(candidates, 7)).toBe(1);
    expect(answerRank(candidates, 9)).toBe(3);
    expect(answerRank(candidates, 4)).toBeNull();
  });

  it('fills held-out lines only (any character, or one inside a word); each rank is the answer\'s place in the full ranking, consistent with the top 5', async () => {
    const dir = tmp('held-out-fill-mask');
    const file = join(dir, 'lines.txt');
    const [demo] = await ensureDemoCorpus(join(tmpdir(), 'roformer-test-corpus'));
    writeFileSync(file, readFileSync(demo!, 'utf8').split('\n').slice(0, 3000).join('\n') + '\n');
    const corpus = await Corpus.open({ paths: [file], evalFraction: 0.05 });
    const { train, heldOut } = await split(corpus);
    const tokenizer = Tokenizer.fromTokens(await buildVocab(train, { size: 4000 }));
    const model = RoFormerV2.create({ config: { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, vocab_size: tokenizer.size }, seed: 1 });

    const wordExamples = await heldOutFillMask(model, tokenizer, corpus, { count: 6, seed: 5, segment: await jiebaSegmenter() });
    const examples = [...(await heldOutFillMask(model, tokenizer, corpus, { count: 6, seed: 5 })), ...wordExamples];
    expect(examples.length).toBe(12);
    for (const e of wordExamples) {
      // the masked character sits inside a word of jieba's of two or more characters
      const at = Array.from(e.masked.replace('[MASK]', '\u0000')).indexOf('\u0000');
      expect(inWordPositions(e.text, (await jiebaSegmenter())(e.text))).toContain(at);
    }
    for (const e of examples) {
      expect(heldOut).toContain(e.text);
      expect(train).not.toContain(e.text);
      expect(e.masked.replace('[MASK]', e.answer)).toBe(e.text);
      // The rank, checked against a ranking computed here from the probabilities.
      const [all] = await fillMask(model, tokenizer, e.masked, tokenizer.size);
      const answerId = tokenizer.tokenToId(e.answer);
      if (answerId === tokenizer.unkId) {
        expect(e.rank).toBeNull();
        continue;
      }
      const p = all!.candidates.find((c) => c.id === answerId)!.probability;
      expect(e.rank).toBe(1 + all!.candidates.filter((c) => c.probability > p).length);
      expect(e.top.map((c) => c.token)).toEqual(all!.candidates.slice(0, 5).map((c) => c.token));
      if (e.rank! <= 5) expect(e.top[e.rank! - 1]!.token).toBe(e.answer);
      else expect(e.top.map((c) => c.token)).not.toContain(e.answer);
    }
  });
});

describe('roformer pretrain --demo, end to end (3 steps)', () => {
  it('ends with 10 held-out fill-mask examples and the rates over 200 held-out lines', () => {
    const out = join(tmp('demo-cli'), 'run');
    const stdout = execFileSync(process.execPath, ['dist/lib/cli.js', 'pretrain', '--demo', '--steps', '3', '--out', out], { encoding: 'utf8' });
    expect(stdout.match(/^ {6}answer \S+, rank /gm)).toHaveLength(10);
    const rates = /over 200 held-out lines \(these 10 among them\): first in (\d+)%, in the top 5 in (\d+)%, in the top 20 in (\d+)%/.exec(stdout);
    expect(rates, stdout.slice(-600)).not.toBeNull();
    const [first, top5, top20] = rates!.slice(1).map(Number);
    expect(first).toBeLessThanOrEqual(top5!);
    expect(top5).toBeLessThanOrEqual(top20!);
    // the printed lines mask a character of a word; the rate over any character follows
    expect(stdout).toMatch(/one character of a word masked/);
    expect(stdout).toMatch(/over 200 held-out lines, any character masked .*: first in \d+%, in the top 5 in \d+%, in the top 20 in \d+%/);
  }, 120_000);
});
