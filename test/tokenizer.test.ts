import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildVocab, SPECIAL_TOKENS, Tokenizer, TokenizerError } from '../lib/data/tokenizer.js';

const SPECIALS = [...SPECIAL_TOKENS];

// A small hand-written vocabulary (index = id).
const VOCAB = [
  ...SPECIALS, // 0..4
  '今', '天', '气', '很', '好', '强', '世', '界', // CJK
  '，', '。', '！', '？', '「', '」', ',', '.', '!', '-', '[', ']', // punctuation
  'un', '##aff', '##able', 'hello', 'world', 'ro', '##former', 'v', '##2', 'x',
];

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tokenizer-test-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('Tokenizer basics', () => {
  const tok = Tokenizer.fromTokens(VOCAB);

  it('exposes ids of the special tokens and the vocabulary', () => {
    expect([tok.padId, tok.unkId, tok.clsId, tok.sepId, tok.maskId]).toEqual([0, 1, 2, 3, 4]);
    expect(tok.size).toBe(VOCAB.length);
    expect(tok.tokens).toEqual(VOCAB);
    expect(tok.tokenToId('很')).toBe(8);
    expect(tok.tokenToId('nope')).toBe(tok.unkId);
    expect(tok.idToToken(8)).toBe('很');
    expect(() => tok.idToToken(VOCAB.length)).toThrow(RangeError);
    expect(() => tok.idToToken(-1)).toThrow(RangeError);
    expect(() => tok.idToToken(1.5)).toThrow(RangeError);
  });

  it('splits CJK text into single characters', () => {
    expect(tok.tokenize('今天天气很好')).toEqual(['今', '天', '天', '气', '很', '好']);
    // Unknown CJK characters become [UNK] individually.
    expect(tok.tokenize('今日好')).toEqual(['今', '[UNK]', '好']);
  });

  it('splits punctuation, ASCII and full-width', () => {
    expect(tok.tokenize('今天，很好。「好」！？')).toEqual(['今', '天', '，', '很', '好', '。', '「', '好', '」', '！', '？']);
    expect(tok.tokenize('hello,world!')).toEqual(['hello', ',', 'world', '!']);
    expect(tok.tokenize('x-x.x')).toEqual(['x', '-', 'x', '.', 'x']);
  });

  it('lower-cases and strips accents by default', () => {
    expect(tok.tokenize('Héllo WORLD')).toEqual(['hello', 'world']);
    expect(tok.tokenize('he\u0301llo')).toEqual(['hello']); // combining accent
    const cased = Tokenizer.fromTokens(VOCAB, 'cased', { lowercase: false });
    expect(cased.tokenize('Héllo hello')).toEqual(['[UNK]', 'hello']);
  });

  it('cleans text: control characters removed, all whitespace splits', () => {
    expect(tok.tokenize('hel\u200blo\u0000\tworld\u3000x\r\n\ufffd')).toEqual(['hello', 'world', 'x']);
    expect(tok.tokenize('')).toEqual([]);
    expect(tok.tokenize(' \n\t ')).toEqual([]);
  });

  it('applies greedy longest-match WordPiece', () => {
    expect(tok.tokenize('unaffable')).toEqual(['un', '##aff', '##able']);
    expect(tok.tokenize('RoFormer')).toEqual(['ro', '##former']);
  });

  it('gives [UNK] for a word with no match and for a word longer than 200 chars', () => {
    expect(tok.tokenize('unaffablez hello')).toEqual(['[UNK]', 'hello']);
    expect(tok.tokenize('zzz')).toEqual(['[UNK]']);
    const vocab = [...SPECIALS, 'a', '##a'];
    const t = Tokenizer.fromTokens(vocab);
    expect(t.tokenize('a'.repeat(200))).toEqual(['a', ...Array(199).fill('##a')]);
    expect(t.tokenize('a'.repeat(201))).toEqual(['[UNK]']);
    expect(t.tokenize('a'.repeat(201) + ' a')).toEqual(['[UNK]', 'a']);
  });

  it('keeps literal special tokens as single tokens', () => {
    expect(tok.tokenize('今天天气很[MASK]。')).toEqual(['今', '天', '天', '气', '很', '[MASK]', '。']);
    expect(tok.encode('很[MASK]')).toEqual([tok.clsId, 8, tok.maskId, tok.sepId]);
    expect(tok.tokenize('[CLS]hello[SEP][PAD][UNK]')).toEqual(['[CLS]', 'hello', '[SEP]', '[PAD]', '[UNK]']);
    // Only the exact strings: lower-case or unterminated ones are ordinary text.
    expect(tok.tokenize('[mask] [MASK')).toEqual(['[', '[UNK]', ']', '[', '[UNK]']);
  });

  it('encode adds [CLS]/[SEP] and truncates to maxLength', () => {
    expect(tok.encode('今天好')).toEqual([2, 5, 6, 9, 3]);
    expect(tok.encode('今天天气很好', 4)).toEqual([2, 5, 6, 3]);
    expect(tok.encode('今天天气很好', 2)).toEqual([2, 3]);
    expect(tok.encode('')).toEqual([2, 3]);
    expect(tok.encode('今'.repeat(1000)).length).toBe(512);
    expect(() => tok.encode('今', 1)).toThrow(RangeError);
    expect(() => tok.encode('今', 3.5)).toThrow(RangeError);
    const text = 'unaffable 今天，hello [MASK] RoFormer-v2 zzz！';
    const all = tok.encodeText(text);
    for (let m = 2; m <= all.length + 3; m++) {
      expect(tok.encode(text, m)).toEqual([tok.clsId, ...all.slice(0, m - 2), tok.sepId]);
    }
  });

  it('encodeText appends into a given array', () => {
    const out = [99];
    expect(tok.encodeText('今天', out)).toBe(out);
    expect(out).toEqual([99, 5, 6]);
    expect(() => tok.encodeText(42 as unknown as string)).toThrow(TypeError);
  });

  it('decodes Chinese text back to the original', () => {
    const text = '今天天气很好，世界！「好」';
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.decode(new Int32Array(tok.encode(text)))).toBe(text);
  });

  it('decode spaces words, glues ## pieces, drops [CLS]/[SEP]/[PAD] unless keepSpecial', () => {
    const ids = tok.encode('hello unaffable world, 很[MASK]zzz');
    expect(tok.decode(ids)).toBe('hello unaffable world,很[MASK] [UNK]');
    expect(tok.decode([...ids, tok.padId])).toBe('hello unaffable world,很[MASK] [UNK]');
    expect(tok.decode(ids, { keepSpecial: true })).toBe('[CLS] hello unaffable world,很[MASK] [UNK] [SEP]');
    expect(() => tok.decode([VOCAB.length])).toThrow(RangeError);
  });
});

describe('Tokenizer compatibility with BERT', () => {
  // Expected outputs checked against the reference BERT BasicTokenizer +
  // WordpieceTokenizer logic (Python, unicodedata).
  const vocab = [
    ...SPECIALS, 'ro', '##former', '##form', '##er', '-', 'v', '##2', '很', '强', '！', 'hello', ',', '世', '界', '!',
    'cafe', 'naive', '2024', '年', 'gp', '##t', '4', '发', '布', '了', '。', 'a', '##b', 'c', 'd', '豈', '𠀀',
    'οδος', 'οδοσ', 'α', '.', '##ς', 'o', '[', ']', '##s', 'gpt', '(', ')', '：', "'", 're', '##ult', 'result',
  ];
  const tok = Tokenizer.fromTokens(vocab, 'compat');
  const cases: [string, string[]][] = [
    ['RoFormer-V2很强！', ['ro', '##former', '-', 'v', '##2', '很', '强', '！']],
    ['Hello, 世界! café NAÏVE', ['hello', ',', '世', '界', '!', 'cafe', 'naive']],
    ['2024年GPT-4发布了。', ['2024', '年', 'gpt', '-', '4', '发', '布', '了', '。']],
    ['a\u200bb\tc\u3000d\u0000', ['a', '##b', 'c', 'd']],
    // CJK compatibility ideograph U+F900 normalises to U+8C48; astral CJK; emoji unknown.
    ['\uf900\u{20000}😀', ['豈', '𠀀', '[UNK]']],
    // Final sigma is decided on the whole whitespace token, as Python's lower() does.
    ['ΟΔΟΣ.Α ΟΔΟΣ. οδοσ', ['οδοσ', '.', 'α', 'οδος', '.', 'οδοσ']],
    ['[MASK]很强 [mask] [MASK', ['[MASK]', '很', '强', '[', '[UNK]', ']', '[', '[UNK]']],
    ["Results：GPT's (roformer)", ['result', '##s', '：', 'gpt', "'", '[UNK]', '(', 'ro', '##former', ')']],
  ];
  for (const [text, expected] of cases) {
    it(JSON.stringify(text), () => {
      expect(tok.tokenize(text)).toEqual(expected);
      expect(tok.encodeText(text)).toEqual(expected.map((t) => tok.tokenToId(t)));
    });
  }
});

describe('Tokenizer validation', () => {
  it('rejects a vocabulary without [MASK], naming it', () => {
    const vocab = VOCAB.filter((t) => t !== '[MASK]');
    expect(() => Tokenizer.fromTokens(vocab, 'my-vocab.txt')).toThrow(TokenizerError);
    expect(() => Tokenizer.fromTokens(vocab, 'my-vocab.txt')).toThrow(/my-vocab\.txt.*\[MASK\]/);
  });

  it('rejects [PAD] not at id 0', () => {
    const vocab = ['[UNK]', '[PAD]', '[CLS]', '[SEP]', '[MASK]'];
    expect(() => Tokenizer.fromTokens(vocab)).toThrow(/\[PAD\] must be id 0.*line 2/);
    expect(() => Tokenizer.fromTokens(['[UNK]', '[CLS]', '[SEP]', '[MASK]'])).toThrow(/\[PAD\]/);
  });

  it('rejects duplicates, naming the token and both lines', () => {
    const vocab = [...SPECIALS, 'a', 'b', 'c', 'b'];
    expect(() => Tokenizer.fromTokens(vocab, 'v.txt')).toThrow(TokenizerError);
    expect(() => Tokenizer.fromTokens(vocab, 'v.txt')).toThrow(/v\.txt: duplicate token "b" at lines 7 and 9/);
  });

  it('rejects an empty vocabulary and tokens with line breaks', () => {
    expect(() => Tokenizer.fromTokens([])).toThrow(/empty/);
    expect(() => Tokenizer.fromTokens([...SPECIALS, 'a\nb'])).toThrow(/line 6/);
  });

  it('fromFile names a missing file', async () => {
    const missing = path.join(dir, 'does-not-exist', 'vocab.txt');
    await expect(Tokenizer.fromFile(missing)).rejects.toThrow(TokenizerError);
    await expect(Tokenizer.fromFile(missing)).rejects.toThrow(missing);
  });

  it('fromFile names the file in validation errors', async () => {
    const file = path.join(dir, 'bad-vocab.txt');
    await fs.writeFile(file, '[PAD]\n[UNK]\n[CLS]\n[SEP]\n');
    await expect(Tokenizer.fromFile(file)).rejects.toThrow(`${file}: missing special token [MASK]`);
  });
});

describe('vocab.txt files', () => {
  it('loads CRLF line endings', async () => {
    const file = path.join(dir, 'crlf.txt');
    await fs.writeFile(file, VOCAB.join('\r\n') + '\r\n');
    const tok = await Tokenizer.fromFile(file);
    expect(tok.tokens).toEqual(VOCAB);
    expect(tok.tokenize('今天 unaffable')).toEqual(['今', '天', 'un', '##aff', '##able']);
  });

  it('loads a file without a final newline', async () => {
    const file = path.join(dir, 'no-final-newline.txt');
    await fs.writeFile(file, VOCAB.join('\n'));
    expect((await Tokenizer.fromFile(file)).tokens).toEqual(VOCAB);
  });

  it('save → fromFile round trip', async () => {
    const file = path.join(dir, 'sub', 'vocab.txt');
    const tok = Tokenizer.fromTokens(VOCAB);
    await tok.save(file);
    expect(await fs.readFile(file, 'utf8')).toBe(VOCAB.join('\n') + '\n');
    const loaded = await Tokenizer.fromFile(file);
    expect(loaded.tokens).toEqual(VOCAB);
    expect(loaded.encode('今天很好！unaffable')).toEqual(tok.encode('今天很好！unaffable'));
    // No temporary files left behind.
    expect(await fs.readdir(path.dirname(file))).toEqual(['vocab.txt']);
  });
});

describe('buildVocab', () => {
  const corpus = ['今天天气很好。', '今天很好！', '天天向上，', '今天'];

  it('puts the special tokens first and the rest by frequency', async () => {
    const vocab = await buildVocab(corpus, { size: 1000 });
    expect(vocab.slice(0, 5)).toEqual(SPECIALS);
    // 天: 6, 今: 3, then 好 and 很 (2 each, ties by string), then the rest (1 each).
    expect(vocab.slice(5, 9)).toEqual(['天', '今', '好', '很']);
    expect(vocab.slice(9)).toEqual(['。', '上', '向', '气', '！', '，'].sort());
    expect(Tokenizer.fromTokens(vocab).tokenToId('天')).toBe(5);
  });

  it('adds whole words and character pieces for non-CJK words', async () => {
    const vocab = await buildVocab(['Hello World', 'hello café'], { size: 1000 });
    expect(new Set(vocab).size).toBe(vocab.length);
    for (const t of ['hello', 'world', 'cafe', 'h', '##h', 'c', '##c', 'e', '##e', 'l', '##l']) expect(vocab).toContain(t);
    expect(vocab).not.toContain('Hello');
    expect(vocab).not.toContain('café');
    // l: 5 occurrences, the most frequent.
    expect(vocab.slice(5, 7)).toEqual(['##l', 'l']);
    const cased = await buildVocab(['Hello World', 'hello café'], { size: 1000, lowercase: false });
    expect(cased).toContain('Hello');
    expect(cased).toContain('café');
  });

  it('respects the size cap and minFrequency', async () => {
    const vocab = await buildVocab(corpus, { size: 8 });
    expect(vocab).toEqual([...SPECIALS, '天', '今', '好']);
    const frequent = await buildVocab(corpus, { size: 1000, minFrequency: 3 });
    expect(frequent).toEqual([...SPECIALS, '天', '今']);
    expect(await buildVocab(corpus, { size: 5 })).toEqual(SPECIALS);
    await expect(buildVocab(corpus, { size: 4 })).rejects.toThrow(RangeError);
  });

  it('is deterministic, for iterables and async iterables, whatever the order of first sight', async () => {
    const mixed = [...corpus, 'Hello World', 'hello café 世界', 'zebra ZEBRA 2024年'];
    const a = await buildVocab(mixed, { size: 1000 });
    const b = await buildVocab([...mixed].reverse(), { size: 1000 });
    async function* gen() {
      for (const t of mixed) yield t;
    }
    const c = await buildVocab(gen(), { size: 1000 });
    expect(b).toEqual(a);
    expect(c).toEqual(a);
  });

  it('breaks frequency ties by token string', async () => {
    const vocab = await buildVocab(['乙甲丙', '丙甲乙'], { size: 100 });
    expect(vocab.slice(5)).toEqual(['丙', '乙', '甲'].sort());
  });

  it('makes every character of the corpus encodable without [UNK] when size allows', async () => {
    const texts = [
      ...corpus,
      'RoFormer-V2 在 2022 年发布，支持 512 tokens；naïve ÆON ＡＢＣ 😀🎉 ßtraße',
      'x y z xyzzy qwerty uiop asdf',
    ];
    const vocab = await buildVocab(texts, { size: 100000 });
    const tok = Tokenizer.fromTokens(vocab);
    for (const text of texts) {
      const ids = tok.encodeText(text);
      expect(ids.length).toBeGreaterThan(0);
      expect(ids).not.toContain(tok.unkId);
    }
    // Unseen words made of seen characters are encodable too.
    expect(tok.encodeText('zyx yourt')).not.toContain(tok.unkId);
    // With a tight cap, character entries win over whole words.
    const small = await buildVocab(['abc abc abc abc', 'xyz'], { size: 5 + 12 });
    expect(small).not.toContain('abc');
    expect(Tokenizer.fromTokens(small).encodeText('abc xyz cab')).not.toContain(1);
  });
});
