import { execFileSync } from 'node:child_process';
import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Corpus, CorpusError, type CorpusOptions, type CorpusPosition, type Document } from '../lib/data/corpus.js';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'corpus-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function tmpDir(): string {
  return fs.mkdtempSync(path.join(tmpRoot, 'case-'));
}

function write(dir: string, name: string, content: string | Buffer): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
}

type TrainDoc = Document & { position: CorpusPosition };

async function take<T>(gen: AsyncGenerator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  if (n <= 0) return out;
  for await (const x of gen) {
    out.push(x);
    if (out.length >= n) break;
  }
  return out;
}

async function all<T>(gen: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of gen) out.push(x);
  return out;
}

/** One epoch of training documents (no held-out split). */
async function epoch(options: CorpusOptions): Promise<{ corpus: Corpus; docs: TrainDoc[] }> {
  const corpus = await Corpus.open({ evalFraction: 0, ...options });
  const docs: TrainDoc[] = [];
  for await (const d of corpus.train()) {
    if (d.position.epoch > 0) break;
    docs.push(d);
  }
  return { corpus, docs };
}

const brief = (docs: Document[]) => docs.map((d) => [path.basename(d.file), d.line, d.text]);

describe('text format', () => {
  it('one document per line, with 1-based line numbers; blank lines skipped', async () => {
    const dir = tmpDir();
    const file = write(dir, 'a.txt', 'first\n\nsecond line\n   \n\tthird\nlast without newline');
    const { docs } = await epoch({ paths: [file] });
    expect(brief(docs)).toEqual([
      ['a.txt', 1, 'first'],
      ['a.txt', 3, 'second line'],
      ['a.txt', 5, '\tthird'],
      ['a.txt', 6, 'last without newline'],
    ]);
    expect(docs[0].file).toBe(path.resolve(file));
  });

  it('blank-line mode: paragraphs, starting line of each', async () => {
    const dir = tmpDir();
    const file = write(dir, 'p.txt', '\n\npara one\ncontinues\n\n \n\npara two\n\nthree a\nthree b\nthree c');
    const { docs } = await epoch({ paths: [file], documents: 'blank-line' });
    expect(brief(docs)).toEqual([
      ['p.txt', 3, 'para one\ncontinues'],
      ['p.txt', 8, 'para two'],
      ['p.txt', 10, 'three a\nthree b\nthree c'],
    ]);
  });

  it('CRLF line endings are stripped, line numbers stay right', async () => {
    const dir = tmpDir();
    const file = write(dir, 'crlf.txt', 'one\r\ntwo\r\n\r\nthree\r\n');
    const { docs } = await epoch({ paths: [file] });
    expect(brief(docs)).toEqual([
      ['crlf.txt', 1, 'one'],
      ['crlf.txt', 2, 'two'],
      ['crlf.txt', 4, 'three'],
    ]);
    const paras = await epoch({ paths: [file], documents: 'blank-line' });
    expect(brief(paras.docs)).toEqual([
      ['crlf.txt', 1, 'one\ntwo'],
      ['crlf.txt', 4, 'three'],
    ]);
  });

  it('a UTF-8 BOM at the start of a file is ignored', async () => {
    const dir = tmpDir();
    const file = write(dir, 'bom.txt', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('你好\nworld\n')]));
    const { docs, corpus } = await epoch({ paths: [file] });
    expect(brief(docs)).toEqual([
      ['bom.txt', 1, '你好'],
      ['bom.txt', 2, 'world'],
    ]);
    expect(docs[0].text.charCodeAt(0)).not.toBe(0xfeff);
    expect(corpus.problemCount).toBe(0);
  });

  it('a directory is read recursively in sorted path order, skipping hidden and foreign files', async () => {
    const dir = tmpDir();
    write(dir, 'b.txt', 'b1\n');
    write(dir, 'a/z.txt', 'az1\naz2\n');
    write(dir, 'a/b/deep.text', 'abdeep\n');
    write(dir, 'c/data.jsonl', '{"text":"cjson"}\n');
    write(dir, '.hidden.txt', 'hidden\n');
    write(dir, '.git/x.txt', 'hidden dir\n');
    write(dir, 'notes.md', 'not corpus\n');
    write(dir, 'image.png', 'not corpus\n');
    const { corpus, docs } = await epoch({ paths: [dir] });
    expect(corpus.files.map((f) => path.relative(dir, f).split(path.sep).join('/'))).toEqual([
      'a/b/deep.text',
      'a/z.txt',
      'b.txt',
      'c/data.jsonl',
    ]);
    expect(docs.map((d) => d.text)).toEqual(['abdeep', 'az1', 'az2', 'b1', 'cjson']);
  });
});

describe('JSONL format', () => {
  it('reads the default field, a named field and a dotted field', async () => {
    const dir = tmpDir();
    const a = write(dir, 'a.jsonl', '{"text":"hello","id":1}\n\n{"text":"world"}\n');
    expect(brief((await epoch({ paths: [a] })).docs)).toEqual([
      ['a.jsonl', 1, 'hello'],
      ['a.jsonl', 3, 'world'],
    ]);
    const b = write(dir, 'b.ndjson', '{"body":"x1"}\n{"body":"x2"}\n');
    expect((await epoch({ paths: [b], field: 'body' })).docs.map((d) => d.text)).toEqual(['x1', 'x2']);
    const c = write(dir, 'c.json', '{"data":{"text":"deep one"}}\r\n{"data":{"text":"deep two"},"text":"top"}\n{"data":{"text":""}}\n');
    expect(brief((await epoch({ paths: [c], field: 'data.text' })).docs)).toEqual([
      ['c.json', 1, 'deep one'],
      ['c.json', 2, 'deep two'],
    ]);
    // format forced on a .txt file
    const d = write(dir, 'd.txt', '{"text":"forced"}\n');
    expect((await epoch({ paths: [d], format: 'jsonl' })).docs.map((x) => x.text)).toEqual(['forced']);
  });

  it('invalid JSON and a missing field are reported with file:line, skipped and counted; reading goes on', async () => {
    const dir = tmpDir();
    const file = write(dir, 'bad.jsonl', '{"text":"ok1"}\n{"text": oops}\n{"other":"x"}\n{"text":42}\n{"text":"ok2"}\n');
    const { corpus, docs } = await epoch({ paths: [file] });
    expect(docs.map((d) => [d.line, d.text])).toEqual([
      [1, 'ok1'],
      [5, 'ok2'],
    ]);
    expect(corpus.problemCount).toBe(3);
    expect(corpus.problems.map((p) => [path.basename(p.file), p.line])).toEqual([
      ['bad.jsonl', 2],
      ['bad.jsonl', 3],
      ['bad.jsonl', 4],
    ]);
    expect(corpus.problems[0].file).toBe(path.resolve(file));
    expect(corpus.problems[0].reason).toMatch(/^invalid JSON: /);
    expect(corpus.problems[1].reason).toBe('field "text" missing or not a string');
  });
});

describe('JSONL text from several fields', () => {
  it("joins a record's present fields in the order given, skips records with none, counting them with file:line", async () => {
    const dir = tmpDir();
    const pairs = write(
      dir,
      'bustm.json',
      [
        '{"id":1,"sentence1":"第一句","sentence2":"第二句","label":"1"}',
        '{"id":2,"sentence":"只有一句"}',
        '{"id":3,"label":"0"}', // none of the fields: a counted problem
        '{"id":4,"content":"一段#idiom#文字","candidates":["甲","乙"]}',
        '{"id":5,"sentence2":"只有后句","sentence1":7}', // a non-string field is passed over
        '{"id":6,"sentence1":"  ","sentence2":""}', // present but blank: skipped quietly, like a blank single field
      ].join('\n') + '\n',
    );
    const { corpus, docs } = await epoch({ paths: [pairs], field: 'sentence, sentence1,sentence2,content', evalFraction: 0 });
    expect(brief(docs)).toEqual([
      ['bustm.json', 1, '第一句\n第二句'],
      ['bustm.json', 2, '只有一句'],
      ['bustm.json', 4, '一段#idiom#文字'],
      ['bustm.json', 5, '只有后句'],
    ]);
    expect(corpus.problemCount).toBe(1);
    expect(corpus.problems).toEqual([
      { file: path.resolve(pairs), line: 3, reason: 'none of the fields "sentence", "sentence1", "sentence2", "content" present as a string' },
    ]);
  });

  it('several files, nested fields, and a resumed position continue with the next record', async () => {
    const dir = tmpDir();
    const a = write(dir, 'a.jsonl', '{"meta":{"title":"题一"},"body":"文一"}\n{"body":"文二"}\n');
    const b = write(dir, 'b.jsonl', '{"meta":{"title":"题三"}}\n{"x":1}\n{"body":"文四"}\n');
    const options = { paths: [a, b], field: 'meta.title,body', evalFraction: 0 };
    const { corpus, docs } = await epoch(options);
    expect(brief(docs)).toEqual([
      ['a.jsonl', 1, '题一\n文一'],
      ['a.jsonl', 2, '文二'],
      ['b.jsonl', 1, '题三'],
      ['b.jsonl', 3, '文四'],
    ]);
    expect(corpus.problems.map((p) => [path.basename(p.file), p.line])).toEqual([['b.jsonl', 2]]);
    const again = await Corpus.open(options);
    const [, second] = await take(again.train(), 2);
    const [next] = await take((await Corpus.open(options)).train(second!.position), 1);
    expect(next!.text).toBe('题三');
  });

  it('refuses an empty name in the list', async () => {
    const dir = tmpDir();
    const a = write(dir, 'a.jsonl', '{"text":"x"}\n');
    await expect(Corpus.open({ paths: [a], field: 'sentence,,content' })).rejects.toThrow(/invalid field "sentence,,content"/);
    await expect(Corpus.open({ paths: [a], field: 'a.,b' })).rejects.toThrow(CorpusError);
  });
});

describe('problems', () => {
  it('invalid UTF-8 is reported with file:line and skipped, in text and JSONL', async () => {
    const dir = tmpDir();
    const text = write(
      dir,
      'bad.txt',
      Buffer.concat([Buffer.from('good one\n'), Buffer.from([0x61, 0xff, 0xfe, 0x62]), Buffer.from('\ngood two\n')]),
    );
    const jsonl = write(
      dir,
      'bad.jsonl',
      Buffer.concat([Buffer.from('{"text":"j1"}\n{"text":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n{"text":"j3"}\n')]),
    );
    const { corpus, docs } = await epoch({ paths: [text, jsonl] });
    expect(brief(docs)).toEqual([
      ['bad.txt', 1, 'good one'],
      ['bad.txt', 3, 'good two'],
      ['bad.jsonl', 1, 'j1'],
      ['bad.jsonl', 3, 'j3'],
    ]);
    expect(corpus.problemCount).toBe(2);
    expect(corpus.problems).toEqual([
      { file: path.resolve(text), line: 2, reason: 'invalid UTF-8' },
      { file: path.resolve(jsonl), line: 2, reason: 'invalid UTF-8' },
    ]);
  });

  it('a problem is counted once, not once per epoch', async () => {
    const dir = tmpDir();
    const file = write(dir, 'x.jsonl', '{"text":"a"}\nnot json\n{"text":"b"}\n');
    const corpus = await Corpus.open({ paths: [file], evalFraction: 0 });
    const docs = await take(corpus.train(), 7);
    expect(docs.map((d) => d.text)).toEqual(['a', 'b', 'a', 'b', 'a', 'b', 'a']);
    expect(docs.map((d) => d.position.epoch)).toEqual([0, 0, 1, 1, 2, 2, 3]);
    expect(corpus.problemCount).toBe(1);
    expect(corpus.problems).toHaveLength(1);
  });

  it('keeps the first 50 problems but counts them all', async () => {
    const dir = tmpDir();
    const lines = Array.from({ length: 120 }, (_, i) => (i % 2 === 0 ? `{"text":"d${i}"}` : '{bad'));
    const file = write(dir, 'many.jsonl', lines.join('\n') + '\n');
    const { corpus, docs } = await epoch({ paths: [file] });
    expect(docs).toHaveLength(60);
    expect(corpus.problemCount).toBe(60);
    expect(corpus.problems).toHaveLength(50);
    expect(corpus.problems[49].line).toBe(100);
  });
});

describe('long lines', () => {
  it('a line much longer than the 1 MiB chunk comes through intact', async () => {
    const dir = tmpDir();
    const long = '长'.repeat(1_000_000) + 'x'.repeat(37); // ~3 MB of UTF-8, multi-byte chars split across chunks
    const file = write(dir, 'long.txt', `short\n${long}\nafter\n`);
    const { docs, corpus } = await epoch({ paths: [file] });
    expect(docs.map((d) => d.line)).toEqual([1, 2, 3]);
    expect(docs[1].text.length).toBe(long.length);
    expect(docs[1].text === long).toBe(true);
    expect(docs[2].text).toBe('after');
    expect(docs[1].position.offset).toBe(6 + Buffer.byteLength(long) + 1);
    expect(corpus.problemCount).toBe(0);
    // same through JSONL
    const j = write(dir, 'long.jsonl', JSON.stringify({ text: long }) + '\n');
    const jd = await epoch({ paths: [j] });
    expect(jd.docs).toHaveLength(1);
    expect(jd.docs[0].text === long).toBe(true);
  });
});

describe('held-out split', () => {
  function thousandDocs(dir: string): string {
    const lines = Array.from({ length: 1000 }, (_, i) => `document number ${i}`);
    return write(dir, 'thousand.txt', lines.join('\n') + '\n');
  }

  it('is deterministic, disjoint from training, and about evalFraction of the documents', async () => {
    const dir = tmpDir();
    const file = thousandDocs(dir);
    const open = () => Corpus.open({ paths: [file], evalFraction: 0.1 });
    const a = await open();
    const held = await all(a.heldOut());
    const heldAgain = await all((await open()).heldOut());
    expect(heldAgain).toEqual(held);
    expect(held.length).toBeGreaterThanOrEqual(50);
    expect(held.length).toBeLessThanOrEqual(150);

    const train = await take(a.train(), 1000 - held.length);
    expect(train.every((d) => d.position.epoch === 0)).toBe(true);
    const trainLines = new Set(train.map((d) => d.line));
    expect(held.some((d) => trainLines.has(d.line))).toBe(false);
    expect(trainLines.size + held.length).toBe(1000);
    // the next training document starts epoch 1
    const more = await take(a.train(train[train.length - 1].position), 1);
    expect(more[0].position.epoch).toBe(1);

    // a fresh corpus that trains first, without calling heldOut(), agrees
    const b = await open();
    const trainB = await take(b.train(), 1000 - held.length);
    expect(trainB.map((d) => d.line)).toEqual(train.map((d) => d.line));
  });

  it('the split depends on the path relative to the corpus root, not on where the corpus lives', async () => {
    const d1 = tmpDir();
    const d2 = tmpDir();
    thousandDocs(d1);
    thousandDocs(d2);
    const h1 = await all((await Corpus.open({ paths: [d1], evalFraction: 0.1 })).heldOut());
    const h2 = await all((await Corpus.open({ paths: [d2], evalFraction: 0.1 })).heldOut());
    expect(h1.map((d) => d.line)).toEqual(h2.map((d) => d.line));
  });

  it('respects evalMaxDocuments; hash-selected documents past the cap go to training', async () => {
    const dir = tmpDir();
    const file = thousandDocs(dir);
    const full = await all((await Corpus.open({ paths: [file], evalFraction: 0.1 })).heldOut());
    const capped = await Corpus.open({ paths: [file], evalFraction: 0.1, evalMaxDocuments: 20 });
    const held = await all(capped.heldOut());
    expect(held).toEqual(full.slice(0, 20));
    const train = await take(capped.train(), 980);
    expect(train.every((d) => d.position.epoch === 0)).toBe(true);
    const lines = new Set(train.map((d) => d.line));
    expect(held.some((d) => lines.has(d.line))).toBe(false);
    expect(full.slice(20).every((d) => lines.has(d.line))).toBe(true);

    // training first, in a fresh corpus (where the cap is learnt while training), agrees
    const fresh = await Corpus.open({ paths: [file], evalFraction: 0.1, evalMaxDocuments: 20 });
    const twoEpochs = await take(fresh.train(), 2 * 980);
    expect(twoEpochs.slice(0, 980)).toEqual(train);
    expect(twoEpochs.slice(980).map((d) => d.line)).toEqual(train.map((d) => d.line));
    // so does resuming mid-epoch in a fresh corpus, before and after the cap's place
    for (const k of [3, 60, 499]) {
      const resumed = await Corpus.open({ paths: [file], evalFraction: 0.1, evalMaxDocuments: 20 });
      expect(await take(resumed.train(train[k].position), 2 * 980 - k - 1)).toEqual(twoEpochs.slice(k + 1));
    }
  });

  it('evalFraction 0 holds nothing out', async () => {
    const dir = tmpDir();
    const file = thousandDocs(dir);
    const c = await Corpus.open({ paths: [file], evalFraction: 0 });
    expect(await all(c.heldOut())).toEqual([]);
  });
});

describe('resume', () => {
  /** Collect 10 documents, resume after doc 4, expect docs 5..9 identically. */
  async function checkResume(options: CorpusOptions, after = 4): Promise<TrainDoc[]> {
    const corpus = await Corpus.open(options);
    const ten = await take(corpus.train(), 10);
    expect(ten).toHaveLength(10);
    const again = await Corpus.open(options);
    const rest = await take(again.train(ten[after].position), 9 - after);
    expect(rest).toEqual(ten.slice(after + 1));
    return ten;
  }

  it('continues exactly at the next document', async () => {
    const dir = tmpDir();
    const file = write(dir, 'r.txt', Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n') + '\n');
    const ten = await checkResume({ paths: [file], evalFraction: 0 });
    expect(ten[4].position).toEqual({ epoch: 0, file: 0, offset: 35, line: 6 });
  });

  it('across an epoch boundary', async () => {
    const dir = tmpDir();
    // 6 documents: docs 0-5 in epoch 0, 6-9 in epoch 1; resume after doc 4 and after doc 5 (the last of the epoch)
    const file = write(dir, 'e.txt', 'a\nb\n\nc\nd\ne\nf');
    const ten = await checkResume({ paths: [file], evalFraction: 0 });
    expect(ten.map((d) => d.text).join('')).toBe('abcdefabcd');
    expect(ten.map((d) => d.position.epoch)).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    await checkResume({ paths: [file], evalFraction: 0 }, 5);
    await checkResume({ paths: [file], evalFraction: 0, documents: 'blank-line' }, 1);
  });

  it('across a file boundary, in a directory, with held-out documents and bad lines in between', async () => {
    const dir = tmpDir();
    write(dir, '1.txt', 'one\ntwo\nthree\nfour\nfive');
    write(dir, '2.jsonl', '{"text":"six"}\nbroken\n{"text":"seven"}\n');
    write(dir, '3.txt', '\n\neight\n\nnine\n');
    const ten = await checkResume({ paths: [dir], evalFraction: 0 });
    expect(ten.map((d) => d.text)).toEqual(['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'one']);
    expect(ten[4].position).toEqual({ epoch: 0, file: 0, offset: 23, line: 5 });
    await checkResume({ paths: [dir], evalFraction: 0 }, 6);
    // with some documents held out
    const many = tmpDir();
    write(many, 'a.txt', Array.from({ length: 30 }, (_, i) => `a${i}`).join('\n'));
    write(many, 'b.txt', Array.from({ length: 30 }, (_, i) => `b${i}`).join('\n'));
    const opts = { paths: [many], evalFraction: 0.3 };
    const c = await Corpus.open(opts);
    const docs = await take(c.train(), 80);
    const firstB = docs.findIndex((d) => d.text.startsWith('b'));
    for (const k of [firstB - 1, firstB, docs.findIndex((d) => d.position.epoch === 1) - 1]) {
      const rest = await take((await Corpus.open(opts)).train(docs[k].position), 10);
      expect(rest).toEqual(docs.slice(k + 1, k + 11));
    }
  });

  it('blank-line paragraphs resume exactly', async () => {
    const dir = tmpDir();
    const paras = Array.from({ length: 8 }, (_, i) => `p${i} a\r\np${i} b`).join('\r\n\r\n\r\n');
    const file = write(dir, 'p.txt', paras);
    await checkResume({ paths: [file], evalFraction: 0, documents: 'blank-line' });
  });

  it('rejects a position that does not fit the corpus', async () => {
    const dir = tmpDir();
    const file = write(dir, 'small.txt', 'x\n');
    const c = await Corpus.open({ paths: [file], evalFraction: 0 });
    await expect(take(c.train({ epoch: 0, file: 3, offset: 0, line: 1 }), 1)).rejects.toThrow(CorpusError);
    await expect(take(c.train({ epoch: 0, file: 0, offset: 99, line: 1 }), 1)).rejects.toThrow(/beyond the end/);
  });
});

describe('errors', () => {
  it('names a nonexistent path', async () => {
    const missing = path.join(tmpRoot, 'does-not-exist.txt');
    await expect(Corpus.open({ paths: [missing] })).rejects.toThrow(CorpusError);
    await expect(Corpus.open({ paths: [missing] })).rejects.toThrow(missing);
  });

  it('no paths, a directory without corpus files', async () => {
    await expect(Corpus.open({ paths: [] })).rejects.toThrow(/no paths/);
    const dir = tmpDir();
    write(dir, 'readme.md', 'x');
    await expect(Corpus.open({ paths: [dir] })).rejects.toThrow(CorpusError);
    await expect(Corpus.open({ paths: [dir] })).rejects.toThrow(dir);
  });

  it('names an unreadable file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corpus-eacces-'));
    const file = write(dir, 'secret.txt', 'x\n');
    fs.chmodSync(file, 0o000);
    if (process.getuid?.() !== 0) {
      await expect(Corpus.open({ paths: [file] })).rejects.toThrow(/EACCES.*secret\.txt/);
      return;
    }
    // root reads everything: check as the unprivileged user `nobody` in a child process (the built dist/).
    // A copy of the module and what it imports, laid out as in dist/lib, inside the (made
    // world-readable) temp dir, wherever the checkout lives.
    fs.chmodSync(dir, 0o755);
    for (const module of ['data/corpus.js', 'data/data-file.js', 'util/value-kinds.js']) {
      fs.mkdirSync(path.join(dir, path.dirname(module)), { recursive: true, mode: 0o755 });
      fs.copyFileSync(path.resolve('dist/lib', module), path.join(dir, module));
    }
    const corpusModule = path.join(dir, 'data', 'corpus.js');
    fs.writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}\n');
    const script = `import(${JSON.stringify(corpusModule)}).then(m => m.Corpus.open({ paths: [${JSON.stringify(file)}] })).then(() => console.log('opened'), e => console.log(e.message))`;
    const output = execFileSync('runuser', ['-u', 'nobody', '--', process.execPath, '-e', script], { encoding: 'utf8' });
    expect(output).toMatch(/EACCES.*secret\.txt/);
  });

  it('an empty corpus: no training documents', async () => {
    const dir = tmpDir();
    write(dir, 'empty.txt', '');
    write(dir, 'blank.txt', '\n  \n\r\n');
    const c = await Corpus.open({ paths: [dir] });
    const err = await take(c.train(), 1).catch((e) => e);
    expect(err).toBeInstanceOf(CorpusError);
    expect(err.message).toMatch(/no training documents/);
  });

  it('only bad lines: no training documents, with the problem count', async () => {
    const dir = tmpDir();
    const file = write(dir, 'bad.jsonl', 'nope\n{"x":1}\n');
    const c = await Corpus.open({ paths: [file] });
    const err = await take(c.train(), 1).catch((e) => e);
    expect(err).toBeInstanceOf(CorpusError);
    expect(err.message).toMatch(/no training documents/);
    expect(err.message).toMatch(/2 problems/);
  });

  it('everything held out: no training documents (instead of looping forever)', async () => {
    const dir = tmpDir();
    const file = write(dir, 'few.txt', 'a\nb\nc\n');
    const c = await Corpus.open({ paths: [file], evalFraction: 1 });
    await expect(take(c.train(), 1)).rejects.toThrow(/no training documents/);
    expect((await all(c.heldOut())).map((d) => d.text)).toEqual(['a', 'b', 'c']);
  });
});

describe('memory', () => {
  it('streams a ~200 MB file with bounded memory', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'big.txt');
    const fd = fs.openSync(file, 'w');
    const words = ['alpha', 'beta', 'gamma', '中文', '模型', '训练', 'delta', 'epsilon'];
    let written = 0;
    let docsWritten = 0;
    let seed = 7;
    try {
      while (written < 200e6) {
        const lines: string[] = [];
        for (let i = 0; i < 20_000; i++) {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
          const n = 4 + (seed % 30);
          const w: string[] = [];
          for (let j = 0; j < n; j++) w.push(words[(seed >>> (j % 24)) & 7]);
          lines.push(w.join(' '));
        }
        const chunk = Buffer.from(lines.join('\n') + '\n');
        fs.writeSync(fd, chunk);
        written += chunk.length;
        docsWritten += lines.length;
      }
    } finally {
      fs.closeSync(fd);
    }
    try {
      const corpus = await Corpus.open({ paths: [file], evalFraction: 0 });
      const before = process.memoryUsage().rss;
      let peak = before;
      let count = 0;
      let bytes = 0;
      let last: CorpusPosition | undefined;
      for await (const d of corpus.train()) {
        if (d.position.epoch > 0) break;
        count++;
        bytes += d.text.length;
        last = d.position;
        if ((count & 0x3fff) === 0) peak = Math.max(peak, process.memoryUsage().rss);
      }
      peak = Math.max(peak, process.memoryUsage().rss);
      expect(count).toBe(docsWritten);
      expect(last?.offset).toBe(written);
      expect(bytes).toBeGreaterThan(0);
      expect(peak - before).toBeLessThan(150 * 1024 * 1024);
    } finally {
      fs.rmSync(file, { force: true });
    }
  }, 60_000);
});
