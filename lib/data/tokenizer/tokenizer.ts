// The Tokenizer: a vocabulary (a VOCAB_FILE, index = id) and BERT-Chinese /
// RoFormerV2 tokenisation over it. The scanner (scanner.ts) splits text into
// CJK characters, punctuation, words and literal special tokens; the sinks
// below turn those pieces into ids: CJK characters and punctuation through a
// flat Int32Array indexed by code point, words through WordPiece
// (wordpiece.ts), special tokens through their ids.

import { promises as fs } from 'node:fs';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { atomText, scan, type Origin, type ScanSink } from './scanner.js';
import { SPECIAL_TOKENS } from './special-tokens.js';
import { isCjkCodePoint, isPunctuationCodePoint } from './unicode-classes.js';
import { PieceTrie } from './wordpiece.js';

/** The name of a vocabulary file (one token per line, line n = id n - 1) is the model dir's to own. */
export { VOCAB_FILE } from '../../model/model-dir.js';

export class TokenizerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenizerError';
  }
}

export interface TokenizerOptions {
  /** Lower-case and strip accents (BERT's do_lower_case). Default true. */
  lowercase?: boolean;
}

/** Token ids and, for each, its [start, end) UTF-16 offsets in the original text. */
export interface TokensWithOffsets {
  ids: number[];
  offsets: Array<[number, number]>;
}

const NO_OUTPUT: number[] = [];

/** Ids into `out`, stopping the scan once `limit` ids are there (encode()'s truncation). */
class EncodeSink implements ScanSink {
  readonly needsOrigins = false;
  out: number[] = NO_OUTPUT;
  limit = Infinity;

  constructor(private readonly tok: Tokenizer, private readonly trie: PieceTrie) {}

  atom(cp: number): boolean {
    const out = this.out;
    out.push(this.tok.atomId(cp));
    return out.length >= this.limit;
  }

  word(s: string, start: number, end: number, cps: number): boolean {
    const out = this.out;
    this.trie.encodeWord(s, start, end, cps, out, this.tok.unkId);
    return out.length >= this.limit;
  }

  special(index: number): boolean {
    const out = this.out;
    out.push(this.tok.specialIds[index]);
    return out.length >= this.limit;
  }
}

/** Ids and their offsets in the original text. Kept apart so the hot encode() path carries no bookkeeping. */
class OffsetSink implements ScanSink {
  readonly needsOrigins = true;

  constructor(
    private readonly tok: Tokenizer,
    private readonly trie: PieceTrie,
    private readonly out: TokensWithOffsets,
  ) {}

  atom(cp: number, start: number, end: number): boolean {
    this.out.ids.push(this.tok.atomId(cp));
    this.out.offsets.push([start, end]);
    return false;
  }

  special(index: number, start: number, end: number): boolean {
    this.out.ids.push(this.tok.specialIds[index]);
    this.out.offsets.push([start, end]);
    return false;
  }

  word(s: string, start: number, end: number, cps: number, origin: Origin | null): boolean {
    const { ids, offsets } = this.out;
    const unk = this.tok.unkId;
    const from = (k: number) => (origin ? origin.from[k] : k);
    const to = (k: number) => (origin ? origin.to[k] : k + 1);
    const mark = ids.length;
    this.trie.encodeWord(s, start, end, cps, ids, unk);
    // A whole-word [UNK] covers the word; otherwise each piece covers its own
    // characters: a piece's token string, less '##', is exactly what it matched
    // ('[' is punctuation, so no word piece can be the token [UNK] itself).
    if (ids.length === mark + 1 && ids[mark] === unk) {
      offsets.push([from(start), to(end - 1)]);
      return false;
    }
    let pos = start;
    for (let k = mark; k < ids.length; k++) {
      const len = this.tok.tokens[ids[k]].length - (k === mark ? 0 : 2);
      offsets.push([from(pos), to(pos + len - 1)]);
      pos += len;
    }
    return false;
  }
}

export class Tokenizer {
  readonly tokens: readonly string[];
  readonly padId: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;
  readonly maskId: number;
  /** Whether text is lower-cased and accent-stripped. */
  readonly lowercase: boolean;
  /** @internal ids of SPECIAL_TOKENS, in order. */
  readonly specialIds: readonly number[];

  private readonly ids: Map<string, number>;
  private readonly charIds: Int32Array; // BMP code point → id of it as a standalone token (CJK / punctuation)
  private readonly astralIds = new Map<number, number>();
  private readonly sink: EncodeSink;
  private readonly trie: PieceTrie;
  private readonly attached: Uint8Array; // id → 1 for single CJK / punctuation tokens (decode spacing)

  private constructor(tokens: string[], ids: Map<string, number>, lowercase: boolean) {
    this.tokens = Object.freeze(tokens);
    this.ids = ids;
    this.lowercase = lowercase;
    const id = (t: string) => ids.get(t)!;
    this.padId = id('[PAD]');
    this.unkId = id('[UNK]');
    this.clsId = id('[CLS]');
    this.sepId = id('[SEP]');
    this.maskId = id('[MASK]');
    this.specialIds = Object.freeze(SPECIAL_TOKENS.map(id));

    // Standalone ids for CJK characters and punctuation, by code point.
    this.charIds = new Int32Array(65536).fill(this.unkId);
    this.attached = new Uint8Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t.length === 0 || t.length > 2) continue;
      const cp = t.codePointAt(0)!;
      if ((cp > 0xffff ? 2 : 1) !== t.length) continue;
      if (isCjkCodePoint(cp) || isPunctuationCodePoint(cp)) {
        this.attached[i] = 1;
        if (cp <= 0xffff) this.charIds[cp] = i;
      }
    }
    if (lowercase) {
      // CJK compatibility ideographs decompose under NFD (U+F900 → U+8C48), as in BERT.
      for (let cp = 0xf900; cp <= 0xfaff; cp++) this.charIds[cp] = this.atomIdSlow(cp);
    }
    this.trie = new PieceTrie(tokens);
    this.sink = new EncodeSink(this, this.trie);
  }

  /**
   * Validates a token list (index = id): [PAD] at id 0, [UNK] [CLS] [SEP] [MASK]
   * present, no duplicates, no line breaks. `source` names the origin in errors.
   */
  static fromTokens(tokens: string[], source = 'vocabulary', options: TokenizerOptions = {}): Tokenizer {
    if (!Array.isArray(tokens)) throw new TokenizerError(`${source}: tokens must be an array of strings`);
    if (tokens.length === 0) throw new TokenizerError(`${source}: vocabulary is empty`);
    const ids = new Map<string, number>();
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (typeof t !== 'string') throw new TokenizerError(`${source}: token at line ${i + 1} is not a string`);
      if (/[\r\n]/.test(t)) throw new TokenizerError(`${source}: token at line ${i + 1} contains a line break`);
      const prev = ids.get(t);
      if (prev !== undefined) {
        throw new TokenizerError(`${source}: duplicate token ${JSON.stringify(t)} at lines ${prev + 1} and ${i + 1}`);
      }
      ids.set(t, i);
    }
    if (tokens[0] !== '[PAD]') {
      const at = ids.get('[PAD]');
      throw new TokenizerError(
        `${source}: [PAD] must be id 0 (line 1), found ${JSON.stringify(tokens[0])} there` +
          (at === undefined ? ' and no [PAD] anywhere' : ` and [PAD] at line ${at + 1}`),
      );
    }
    const missing = SPECIAL_TOKENS.filter((t) => !ids.has(t));
    if (missing.length > 0) {
      throw new TokenizerError(`${source}: missing special token${missing.length > 1 ? 's' : ''} ${missing.join(' ')}`);
    }
    return new Tokenizer(tokens.slice(), ids, options.lowercase ?? true);
  }

  /** Loads a vocabulary file (VOCAB_FILE): one token per line (trailing \r stripped, UTF-8 BOM ignored). */
  static async fromFile(path: string, options: TokenizerOptions = {}): Promise<Tokenizer> {
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (err) {
      throw new TokenizerError(`${path}: cannot read vocabulary file: ${(err as Error).message}`, { cause: err });
    }
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const lines = text.split('\n');
    if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop(); // final newline
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (line.endsWith('\r')) lines[i] = line.slice(0, -1);
    }
    return Tokenizer.fromTokens(lines, path, options);
  }

  get size(): number {
    return this.tokens.length;
  }

  tokenToId(token: string): number {
    return this.ids.get(token) ?? this.unkId;
  }

  idToToken(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.tokens.length) {
      throw new RangeError(`token id ${id} out of range [0, ${this.tokens.length})`);
    }
    return this.tokens[id];
  }

  /** Basic tokenization + WordPiece → token strings. */
  tokenize(text: string): string[] {
    const ids = this.encodeText(text);
    const out = new Array<string>(ids.length);
    for (let i = 0; i < ids.length; i++) out[i] = this.tokens[ids[i]];
    return out;
  }

  /** Token ids without [CLS]/[SEP] (appends into `out` if given, returns it). */
  encodeText(text: string, out: number[] = []): number[] {
    this.run(text, out, Infinity);
    return out;
  }

  /** [CLS] ids [SEP], truncated so the total is ≤ maxLength (default 512, minimum 2). */
  encode(text: string, maxLength = 512): number[] {
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new RangeError(`maxLength must be an integer ≥ 2, got ${maxLength}`);
    }
    const out = [this.clsId];
    this.run(text, out, maxLength - 1);
    if (out.length > maxLength - 1) out.length = maxLength - 1;
    out.push(this.sepId);
    return out;
  }

  /**
   * Token ids without [CLS]/[SEP], each with its [start, end) offsets into
   * `text` in UTF-16 code units (JS string indices), so that `text.slice(start,
   * end)` is what the token was made from: the original characters before
   * lower-casing and accent stripping, a WordPiece's own characters (without
   * '##'), a whole word for [UNK], both halves of an astral character. The ids
   * are exactly those of encodeText(). A separate, slower path (about a
   * quarter of encodeText's speed): use it where offsets are needed (spans,
   * predictions), not for bulk pre-training text.
   */
  encodeTextWithOffsets(text: string): TokensWithOffsets {
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${typeof text}`);
    const result: TokensWithOffsets = { ids: [], offsets: [] };
    scan(text, this.lowercase, new OffsetSink(this, this.trie, result));
    return result;
  }

  /**
   * [CLS] ids [SEP] truncated to maxLength (as encode()), with each token's
   * [start, end) offsets into `text`; [CLS] and [SEP] get [0, 0].
   */
  encodeWithOffsets(text: string, maxLength = 512): TokensWithOffsets {
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new RangeError(`maxLength must be an integer ≥ 2, got ${maxLength}`);
    }
    const { ids, offsets } = this.encodeTextWithOffsets(text);
    const keep = Math.min(ids.length, maxLength - 2);
    return {
      ids: [this.clsId, ...ids.slice(0, keep), this.sepId],
      offsets: [[0, 0], ...offsets.slice(0, keep), [0, 0]],
    };
  }

  /**
   * Joins tokens back into text: CJK characters and punctuation without
   * spaces, other words separated by spaces, '##' pieces glued to the previous
   * token. Special tokens other than [UNK] and [MASK] are dropped unless
   * `keepSpecial`.
   */
  decode(ids: ArrayLike<number>, options: { keepSpecial?: boolean } = {}): string {
    const keepSpecial = options.keepSpecial ?? false;
    const [pad, , cls, sep] = this.specialIds;
    let text = '';
    let prevWord = false; // previous output was a word (needs a space before the next word)
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const t = this.idToToken(id);
      if (!keepSpecial && (id === pad || id === cls || id === sep)) continue;
      if (this.attached[id]) {
        text += t;
        prevWord = false;
      } else if (t.length > 2 && t.startsWith('##')) {
        text += t.slice(2);
        prevWord = true;
      } else {
        if (prevWord) text += ' ';
        text += t;
        prevWord = true;
      }
    }
    return text;
  }

  /** The contents of the vocabulary file (VOCAB_FILE): one token per line. */
  vocabFileText(): string {
    return this.tokens.join('\n') + '\n';
  }

  /** Writes the vocabulary file (VOCAB_FILE) atomically. */
  async save(path: string): Promise<void> {
    await writeFileAtomic(path, [this.vocabFileText()]);
  }

  /** @internal id of a CJK/punctuation code point as a standalone token. */
  atomId(cp: number): number {
    return cp < 0x10000 ? this.charIds[cp] : this.astralAtomId(cp);
  }

  private astralAtomId(cp: number): number {
    let id = this.astralIds.get(cp);
    if (id === undefined) {
      id = this.atomIdSlow(cp);
      this.astralIds.set(cp, id);
    }
    return id;
  }

  private atomIdSlow(cp: number): number {
    return this.ids.get(atomText(cp, this.lowercase)) ?? this.unkId;
  }

  private run(text: string, out: number[], limit: number): void {
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${typeof text}`);
    if (out.length >= limit) return;
    const sink = this.sink;
    sink.out = out;
    sink.limit = limit;
    try {
      scan(text, this.lowercase, sink);
    } finally {
      sink.out = NO_OUTPUT; // don't keep the caller's array alive
    }
  }
}

