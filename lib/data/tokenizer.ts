// BERT-style tokenizer (BERT-Chinese / RoFormerV2 compatible), pure TypeScript.
//
// Behaviour follows BERT's BasicTokenizer + WordpieceTokenizer:
//   1. clean text: drop NUL, U+FFFD and control characters (Unicode category C*
//      except \t \n \r); whitespace (\t \n \r, category Zs, U+2028/U+2029) → space;
//   2. every CJK character (BERT's `_is_chinese_char` ranges) is its own token;
//   3. lower-case and strip accents (NFD, drop category Mn) — on by default;
//   4. every punctuation character (ASCII 33–47, 58–64, 91–96, 123–126, or
//      category P*) is its own token; the rest splits on whitespace;
//   5. greedy longest-match-first WordPiece with '##' continuations; a word with
//      no match, or longer than 200 code points, becomes [UNK].
// The literal strings [PAD] [UNK] [CLS] [SEP] [MASK] are matched (case-sensitively,
// before lower-casing) and kept as single tokens, like Hugging Face's added tokens.
//
// Speed: text is scanned once by code point against a per-code-point class
// table. CJK characters and punctuation map straight to ids through a flat
// Int32Array indexed by code point; only runs of other characters (Latin words,
// digits, …) go through WordPiece, which walks a hashed trie over UTF-16 code
// units without allocating substrings. Words that need normalisation (upper
// case, accents, control characters inside) take a slower string path.

import { promises as fs } from 'node:fs';
import { writeFileAtomic } from '../util/atomic-file.js';

export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;
export type SpecialToken = (typeof SPECIAL_TOKENS)[number];

/** Words longer than this many code points become [UNK] (BERT's max_input_chars_per_word). */
export const MAX_CHARS_PER_WORD = 200;

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

// ---------------------------------------------------------------------------
// Character classes

const WORD = 0; // part of a word, unchanged by normalisation
const DIRTY = 1; // part of a word, changed by normalisation (upper case, accent, combining mark, …)
const SPACE = 2; // whitespace: ends a word
const DROP = 3; // removed by cleaning (NUL, U+FFFD, control/format/unassigned/private/surrogate)
const CJK = 4; // CJK ideograph: its own token
const PUNCT = 5; // punctuation: its own token
const BRACKET = 6; // '[': punctuation that may start a literal special token
const UNKNOWN = 255; // not classified yet (tables fill lazily)

const RE_ZS = /^\p{Zs}$/u;
const RE_C = /^\p{C}$/u;
const RE_P = /^\p{P}$/u;
const RE_MN = /\p{Mn}/gu;
const RE_LONE_SURROGATE = /\p{Cs}/u;

/** BERT's `_is_chinese_char`. */
export function isCjkCodePoint(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** BERT's `_is_punctuation`: ASCII non-alphanumeric symbols, or Unicode category P*. */
export function isPunctuationCodePoint(cp: number): boolean {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
    return true;
  }
  return cp >= 128 && RE_P.test(String.fromCodePoint(cp));
}

/** Lower-case, NFD, drop combining marks (BERT's lower() + _run_strip_accents). */
function normalizeLower(s: string): string {
  return s.toLowerCase().normalize('NFD').replace(RE_MN, '');
}

function classify(cp: number, lowercase: boolean): number {
  if (cp === 0 || cp === 0xfffd) return DROP;
  if (cp === 9 || cp === 10 || cp === 13 || cp === 32) return SPACE;
  if (cp < 32 || cp === 127) return DROP;
  if (cp < 128) {
    if (isPunctuationCodePoint(cp)) return cp === 0x5b ? BRACKET : PUNCT;
    return lowercase && cp >= 65 && cp <= 90 ? DIRTY : WORD;
  }
  const ch = String.fromCodePoint(cp);
  // Python's str.split() (BERT's whitespace_tokenize) also splits on U+2028/U+2029.
  if (RE_ZS.test(ch) || cp === 0x2028 || cp === 0x2029) return SPACE;
  if (RE_C.test(ch)) return DROP;
  if (isCjkCodePoint(cp)) return CJK;
  const changed = lowercase && normalizeLower(ch) !== ch;
  if (isPunctuationCodePoint(cp)) return changed ? DIRTY : PUNCT;
  return changed ? DIRTY : WORD;
}

// Lazily filled class tables for the BMP (one per lowercase mode), and caches
// for astral code points.
const BMP_CLASS = [new Uint8Array(65536).fill(UNKNOWN), new Uint8Array(65536).fill(UNKNOWN)];
const ASTRAL_CLASS = [new Map<number, number>(), new Map<number, number>()];

function astralClass(cp: number, mode: number): number {
  const cache = ASTRAL_CLASS[mode];
  let cls = cache.get(cp);
  if (cls === undefined) {
    cls = classify(cp, mode === 1);
    cache.set(cp, cls);
  }
  return cls;
}

/** Index into SPECIAL_TOKENS of the literal special token starting at text[i] ('['), or -1. */
function matchSpecial(text: string, i: number): number {
  switch (text.charCodeAt(i + 1)) {
    case 0x50: return text.startsWith('[PAD]', i) ? 0 : -1; // P
    case 0x55: return text.startsWith('[UNK]', i) ? 1 : -1; // U
    case 0x43: return text.startsWith('[CLS]', i) ? 2 : -1; // C
    case 0x53: return text.startsWith('[SEP]', i) ? 3 : -1; // S
    case 0x4d: return text.startsWith('[MASK]', i) ? 4 : -1; // M
    default: return -1;
  }
}

const RE_CASED = /^\p{Cased}$/u;
const RE_CASE_IGNORABLE = /^\p{Case_Ignorable}$/u;

/**
 * Whether the capital sigma at text[i] lower-cases to final 'ς'. BERT lower-cases
 * whole whitespace-separated tokens (after CJK characters were spaced out and
 * control characters removed, before punctuation splitting), so the Unicode
 * Final_Sigma context (cased, case-ignorable*, Σ, not followed by
 * case-ignorable* cased) is looked for in that span, as Python's str.lower() does.
 */
function isFinalSigma(text: string, i: number): boolean {
  // -1: token boundary (whitespace, CJK, literal special token); 0: skipped
  // (removed by cleaning, or case-ignorable); 1: cased; 2: anything else.
  const kind = (cp: number): number => {
    let cls = cp > 0xffff ? astralClass(cp, 0) : BMP_CLASS[0][cp];
    if (cls === UNKNOWN) cls = BMP_CLASS[0][cp] = classify(cp, false);
    if (cls === SPACE || cls === CJK) return -1;
    if (cls === DROP) return 0;
    const ch = String.fromCodePoint(cp);
    if (RE_CASE_IGNORABLE.test(ch)) return 0;
    return RE_CASED.test(ch) ? 1 : 2;
  };
  let before = false;
  for (let j = i; j > 0; ) {
    let cp = text.charCodeAt(--j);
    if (cp >= 0xdc00 && cp <= 0xdfff && j > 0) {
      const hi = text.charCodeAt(j - 1);
      if (hi >= 0xd800 && hi <= 0xdbff) {
        cp = ((hi - 0xd800) << 10) + (cp - 0xdc00) + 0x10000;
        j--;
      }
    }
    if (cp === 0x5d && SPECIAL_TOKENS.some((t) => j + 1 >= t.length && text.startsWith(t, j + 1 - t.length))) break;
    const k = kind(cp);
    if (k === 0) continue;
    before = k === 1;
    break;
  }
  if (!before) return false;
  for (let j = i + 1; j < text.length; ) {
    const cp = text.codePointAt(j)!;
    if (cp === 0x5b && matchSpecial(text, j) >= 0) break;
    const k = kind(cp);
    if (k === 0) {
      j += cp > 0xffff ? 2 : 1;
      continue;
    }
    return k !== 1;
  }
  return true;
}

/** Receives the pieces of basic tokenisation. Each method returns true to stop the scan. */
interface ScanSink {
  /** A CJK character or punctuation mark (code point as written; CJK is not normalised yet). */
  atom(cp: number): boolean;
  /** A word s[start, end): already cleaned and normalised, `cps` code points long. */
  word(s: string, start: number, end: number, cps: number): boolean;
  /** A literal special token (index into SPECIAL_TOKENS). */
  special(index: number): boolean;
}

/** Words that need cleaning or normalisation: the slow string path. */
function scanDirtyWord(text: string, from: number, to: number, lowercase: boolean, sink: ScanSink): boolean {
  const table = BMP_CLASS[0];
  // Remove characters dropped by cleaning; resolve final sigma in BERT's context.
  let cleaned = '';
  for (let i = from; i < to; ) {
    const cp = text.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    let cls = cp > 0xffff ? astralClass(cp, 0) : table[cp];
    if (cls === UNKNOWN) cls = table[cp] = classify(cp, false);
    if (cp === 0x3a3 && lowercase) cleaned += isFinalSigma(text, i) ? '\u03c2' : '\u03c3';
    else if (cls !== DROP) cleaned += text.slice(i, i + w);
    i += w;
  }
  const s = lowercase ? normalizeLower(cleaned) : cleaned;
  // Split on punctuation (and whitespace, which BERT's final whitespace split also does).
  let start = -1;
  let cps = 0;
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    let cls = cp > 0xffff ? astralClass(cp, 0) : table[cp];
    if (cls === UNKNOWN) cls = table[cp] = classify(cp, false);
    if (cls === PUNCT || cls === BRACKET || cls === SPACE || cls === CJK) {
      if (start >= 0) {
        if (sink.word(s, start, i, cps)) return true;
        start = -1;
      }
      if (cls !== SPACE && sink.atom(cp)) return true;
    } else if (cls !== DROP) {
      if (start < 0) {
        start = i;
        cps = 0;
      }
      cps++;
    }
    i += w;
  }
  return start >= 0 && sink.word(s, start, s.length, cps);
}

/** BERT basic tokenisation of `text`, streamed into `sink` without building arrays. */
function scan(text: string, lowercase: boolean, sink: ScanSink): void {
  const mode = lowercase ? 1 : 0;
  const table = BMP_CLASS[mode];
  const n = text.length;
  let wordStart = -1; // start of the current word run, or -1
  let wordCps = 0; // its length in code points
  let dirty = false; // whether it needs the slow path
  let i = 0;
  while (i < n) {
    let cp = text.charCodeAt(i);
    let next = i + 1;
    let cls: number;
    if (cp < 0xd800 || cp > 0xdbff) {
      cls = table[cp];
      if (cls === UNKNOWN) cls = table[cp] = classify(cp, lowercase);
    } else {
      const lo = next < n ? text.charCodeAt(next) : 0;
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
        next++;
        cls = astralClass(cp, mode);
      } else {
        cls = DROP; // lone surrogate
      }
    }
    if (cls === CJK || cls === PUNCT) {
      if (wordStart >= 0) {
        if (dirty ? scanDirtyWord(text, wordStart, i, lowercase, sink) : sink.word(text, wordStart, i, wordCps)) return;
        wordStart = -1;
      }
      if (sink.atom(cp)) return;
    } else if (cls === WORD || cls === DIRTY) {
      if (wordStart < 0) {
        wordStart = i;
        wordCps = 0;
        dirty = false;
      }
      wordCps++;
      if (cls === DIRTY) dirty = true;
    } else if (cls === SPACE) {
      if (wordStart >= 0) {
        if (dirty ? scanDirtyWord(text, wordStart, i, lowercase, sink) : sink.word(text, wordStart, i, wordCps)) return;
        wordStart = -1;
      }
    } else if (cls === DROP) {
      // Removed without splitting: "a\u200bb" is the word "ab".
      if (wordStart >= 0) dirty = true;
    } else {
      // BRACKET
      if (wordStart >= 0) {
        if (dirty ? scanDirtyWord(text, wordStart, i, lowercase, sink) : sink.word(text, wordStart, i, wordCps)) return;
        wordStart = -1;
      }
      const sp = matchSpecial(text, i);
      if (sp >= 0) {
        if (sink.special(sp)) return;
        next = i + SPECIAL_TOKENS[sp].length;
      } else if (sink.atom(cp)) {
        return;
      }
    }
    i = next;
  }
  if (wordStart >= 0) {
    if (dirty) scanDirtyWord(text, wordStart, n, lowercase, sink);
    else sink.word(text, wordStart, n, wordCps);
  }
}

// ---------------------------------------------------------------------------
// WordPiece trie: two roots (0 = word-initial pieces, 1 = '##' continuations),
// edges over UTF-16 code units in an open-addressing hash table.

class PieceTrie {
  private readonly term: Int32Array; // node → token id, or -1
  private readonly edgeNode: Int32Array; // slot → parent node, or -1 if empty
  private readonly edgeUnit: Uint16Array; // slot → code unit
  private readonly edgeChild: Int32Array; // slot → child node
  private readonly mask: number;
  private readonly shift: number;

  constructor(tokens: readonly string[]) {
    const edges = new Map<number, number>(); // parent * 65536 + unit → child
    const term: number[] = [-1, -1];
    for (let id = 0; id < tokens.length; id++) {
      const token = tokens[id];
      let node: number;
      let from: number;
      if (token.length > 2 && token.startsWith('##')) {
        node = 1;
        from = 2;
      } else if (token.length > 0) {
        node = 0;
        from = 0;
      } else {
        continue;
      }
      // Matching walks UTF-16 code units; a token with a lone surrogate could
      // match half of a pair, where BERT (by code points) never matches it.
      if (RE_LONE_SURROGATE.test(token)) continue;
      for (let j = from; j < token.length; j++) {
        const key = node * 65536 + token.charCodeAt(j);
        let child = edges.get(key);
        if (child === undefined) {
          child = term.length;
          term.push(-1);
          edges.set(key, child);
        }
        node = child;
      }
      if (term[node] < 0) term[node] = id;
    }
    this.term = Int32Array.from(term);
    let bits = 4;
    while (1 << bits < edges.size * 2) bits++;
    const capacity = 1 << bits;
    this.mask = capacity - 1;
    this.shift = 32 - bits;
    this.edgeNode = new Int32Array(capacity).fill(-1);
    this.edgeUnit = new Uint16Array(capacity);
    this.edgeChild = new Int32Array(capacity);
    for (const [key, child] of edges) {
      const parent = Math.floor(key / 65536);
      const unit = key % 65536;
      let h = this.slot(parent, unit);
      while (this.edgeNode[h] !== -1) h = (h + 1) & this.mask;
      this.edgeNode[h] = parent;
      this.edgeUnit[h] = unit;
      this.edgeChild[h] = child;
    }
  }

  private slot(node: number, unit: number): number {
    return Math.imul((Math.imul(node, 0x2c1b3c6d) ^ unit) + 0x61c88647, 0x9e3779b1) >>> this.shift;
  }

  /**
   * Greedy longest-match WordPiece of s[start, end) appended to `out`;
   * the whole word becomes `unkId` if some position has no match.
   */
  encodeWord(s: string, start: number, end: number, out: number[], unkId: number): void {
    const { term, edgeNode, edgeUnit, edgeChild, mask, shift } = this;
    const mark = out.length;
    let pos = start;
    while (pos < end) {
      let node = pos === start ? 0 : 1;
      let bestId = -1;
      let bestEnd = -1;
      for (let j = pos; j < end; j++) {
        const unit = s.charCodeAt(j);
        let h = Math.imul((Math.imul(node, 0x2c1b3c6d) ^ unit) + 0x61c88647, 0x9e3779b1) >>> shift;
        let child = -1;
        for (let p = edgeNode[h]; p !== -1; p = edgeNode[h]) {
          if (p === node && edgeUnit[h] === unit) {
            child = edgeChild[h];
            break;
          }
          h = (h + 1) & mask;
        }
        if (child < 0) break;
        node = child;
        const id = term[node];
        if (id >= 0) {
          bestId = id;
          bestEnd = j + 1;
        }
      }
      if (bestId < 0) {
        out.length = mark;
        out.push(unkId);
        return;
      }
      out.push(bestId);
      pos = bestEnd;
    }
  }
}

// ---------------------------------------------------------------------------
// Character offsets: a second scan that mirrors scan() but knows where each
// piece came from. Kept apart so the hot encode() path carries no bookkeeping.

/** Token ids and, for each, its [start, end) UTF-16 offsets in the original text. */
export interface TokensWithOffsets {
  ids: number[];
  offsets: Array<[number, number]>;
}

/** Like ScanSink, with origins: `from`/`to` index arrays give each unit of a word's string its original range. */
interface OffsetScanSink {
  atom(cp: number, start: number, end: number): void;
  /**
   * A word s[start, end) of `cps` code points. `origin` is null when s is the
   * original text (unit k came from [k, k + 1)); otherwise unit k of s came
   * from the original range [origin.from[k], origin.to[k]).
   */
  word(s: string, start: number, end: number, cps: number, origin: Origin | null): void;
  special(index: number, start: number, end: number): void;
}

interface Origin {
  from: number[];
  to: number[];
}

function classOf(cp: number, mode: number): number {
  if (cp > 0xffff) return astralClass(cp, mode);
  let cls = BMP_CLASS[mode][cp];
  if (cls === UNKNOWN) cls = BMP_CLASS[mode][cp] = classify(cp, mode === 1);
  return cls;
}

/**
 * scanDirtyWord with origins. The word is normalised one original code point
 * at a time so each normalised unit knows its source character. If that ever
 * differs from normalising the whole word at once (canonical reordering of
 * non-spacing marks across characters, which are then dropped anyway), the
 * ids still come from the whole-word form and every piece gets the whole
 * word's range: ids stay exact, offsets become coarse rather than wrong.
 */
function scanDirtyWordWithOffsets(text: string, from: number, to: number, lowercase: boolean, sink: OffsetScanSink): void {
  let cleaned = '';
  let perChar = '';
  const origin: Origin = { from: [], to: [] };
  for (let i = from; i < to; ) {
    const cp = text.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    if (classOf(cp, 0) !== DROP) {
      let ch = text.slice(i, i + w);
      if (cp === 0x3a3 && lowercase) ch = isFinalSigma(text, i) ? '\u03c2' : '\u03c3';
      cleaned += ch;
      const norm = lowercase ? normalizeLower(ch) : ch;
      perChar += norm;
      for (let k = 0; k < norm.length; k++) {
        origin.from.push(i);
        origin.to.push(i + w);
      }
      // A character normalised away (a combining accent) belongs to the one before it: "Cafe\u0301" is all "cafe".
      if (norm.length === 0 && origin.to.length > 0) origin.to[origin.to.length - 1] = i + w;
    }
    i += w;
  }
  const s = lowercase ? normalizeLower(cleaned) : cleaned;
  if (s !== perChar) {
    origin.from = new Array<number>(s.length).fill(from);
    origin.to = new Array<number>(s.length).fill(to);
  }
  let start = -1;
  let cps = 0;
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    const cls = classOf(cp, 0);
    if (cls === PUNCT || cls === BRACKET || cls === SPACE || cls === CJK) {
      if (start >= 0) {
        sink.word(s, start, i, cps, origin);
        start = -1;
      }
      if (cls !== SPACE) sink.atom(cp, origin.from[i], origin.to[i + w - 1]);
    } else if (cls !== DROP) {
      if (start < 0) {
        start = i;
        cps = 0;
      }
      cps++;
    }
    i += w;
  }
  if (start >= 0) sink.word(s, start, s.length, cps, origin);
}

/** scan() with the original position of every piece (same decisions, same order). */
function scanWithOffsets(text: string, lowercase: boolean, sink: OffsetScanSink): void {
  const mode = lowercase ? 1 : 0;
  const n = text.length;
  let wordStart = -1;
  let wordCps = 0;
  let dirty = false;
  const endWord = (at: number) => {
    if (wordStart < 0) return;
    if (dirty) scanDirtyWordWithOffsets(text, wordStart, at, lowercase, sink);
    else sink.word(text, wordStart, at, wordCps, null);
    wordStart = -1;
  };
  let i = 0;
  while (i < n) {
    let cp = text.charCodeAt(i);
    let next = i + 1;
    let cls: number;
    if (cp < 0xd800 || cp > 0xdbff) {
      cls = classOf(cp, mode);
    } else {
      const lo = next < n ? text.charCodeAt(next) : 0;
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
        next++;
        cls = astralClass(cp, mode);
      } else {
        cls = DROP;
      }
    }
    if (cls === CJK || cls === PUNCT) {
      endWord(i);
      sink.atom(cp, i, next);
    } else if (cls === WORD || cls === DIRTY) {
      if (wordStart < 0) {
        wordStart = i;
        wordCps = 0;
        dirty = false;
      }
      wordCps++;
      if (cls === DIRTY) dirty = true;
    } else if (cls === SPACE) {
      endWord(i);
    } else if (cls === DROP) {
      if (wordStart >= 0) dirty = true;
    } else {
      endWord(i);
      const sp = matchSpecial(text, i);
      if (sp >= 0) {
        next = i + SPECIAL_TOKENS[sp].length;
        sink.special(sp, i, next);
      } else {
        sink.atom(cp, i, next);
      }
    }
    i = next;
  }
  endWord(n);
}

class OffsetSink implements OffsetScanSink {
  constructor(
    private readonly tok: Tokenizer,
    private readonly charIds: Int32Array,
    private readonly trie: PieceTrie,
    private readonly out: TokensWithOffsets,
  ) {}

  atom(cp: number, start: number, end: number): void {
    this.out.ids.push(cp < 0x10000 ? this.charIds[cp] : this.tok.astralAtomId(cp));
    this.out.offsets.push([start, end]);
  }

  special(index: number, start: number, end: number): void {
    this.out.ids.push(this.tok.specialIds[index]);
    this.out.offsets.push([start, end]);
  }

  word(s: string, start: number, end: number, cps: number, origin: Origin | null): void {
    const { ids, offsets } = this.out;
    const unk = this.tok.unkId;
    const from = (k: number) => (origin ? origin.from[k] : k);
    const to = (k: number) => (origin ? origin.to[k] : k + 1);
    const mark = ids.length;
    if (cps > MAX_CHARS_PER_WORD) ids.push(unk);
    else this.trie.encodeWord(s, start, end, ids, unk);
    // A whole-word [UNK] covers the word; otherwise each piece covers its own
    // characters: a piece's token string, less '##', is exactly what it matched
    // ('[' is punctuation, so no word piece can be the token [UNK] itself).
    if (ids.length === mark + 1 && ids[mark] === unk) {
      offsets.push([from(start), to(end - 1)]);
      return;
    }
    let pos = start;
    for (let k = mark; k < ids.length; k++) {
      const len = this.tok.tokens[ids[k]].length - (k === mark ? 0 : 2);
      offsets.push([from(pos), to(pos + len - 1)]);
      pos += len;
    }
  }
}

// ---------------------------------------------------------------------------
// Tokenizer

const NO_OUTPUT: number[] = [];

class EncodeSink implements ScanSink {
  out: number[] = NO_OUTPUT;
  limit = Infinity;

  constructor(private readonly tok: Tokenizer, private readonly charIds: Int32Array, private readonly trie: PieceTrie) {}

  atom(cp: number): boolean {
    const out = this.out;
    out.push(cp < 0x10000 ? this.charIds[cp] : this.tok.astralAtomId(cp));
    return out.length >= this.limit;
  }

  word(s: string, start: number, end: number, cps: number): boolean {
    const out = this.out;
    if (cps > MAX_CHARS_PER_WORD) out.push(this.tok.unkId);
    else this.trie.encodeWord(s, start, end, out, this.tok.unkId);
    return out.length >= this.limit;
  }

  special(index: number): boolean {
    const out = this.out;
    out.push(this.tok.specialIds[index]);
    return out.length >= this.limit;
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
    this.sink = new EncodeSink(this, this.charIds, this.trie);
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

  /** Loads a vocab.txt: one token per line (trailing \r stripped, UTF-8 BOM ignored). */
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
    scanWithOffsets(text, this.lowercase, new OffsetSink(this, this.charIds, this.trie, result));
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

  /** Writes vocab.txt (one token per line) atomically. */
  async save(path: string): Promise<void> {
    await writeFileAtomic(path, [this.tokens.join('\n') + '\n']);
  }

  /** @internal id of an astral CJK/punctuation code point as a standalone token. */
  astralAtomId(cp: number): number {
    let id = this.astralIds.get(cp);
    if (id === undefined) {
      id = this.atomIdSlow(cp);
      this.astralIds.set(cp, id);
    }
    return id;
  }

  private atomIdSlow(cp: number): number {
    let s = String.fromCodePoint(cp);
    if (this.lowercase && isCjkCodePoint(cp)) s = normalizeLower(s);
    return this.ids.get(s) ?? this.unkId;
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

// ---------------------------------------------------------------------------
// Vocabulary building

class CountSink implements ScanSink {
  readonly atoms = new Map<number, number>(); // CJK / punctuation code point → count
  readonly chars = new Map<number, number>(); // code points inside words → count
  readonly words = new Map<string, number>(); // multi-character words → count

  atom(cp: number): boolean {
    this.atoms.set(cp, (this.atoms.get(cp) ?? 0) + 1);
    return false;
  }

  word(s: string, start: number, end: number, cps: number): boolean {
    for (let i = start; i < end; ) {
      const cp = s.codePointAt(i)!;
      this.chars.set(cp, (this.chars.get(cp) ?? 0) + 1);
      i += cp > 0xffff ? 2 : 1;
    }
    if (cps > 1 && cps <= MAX_CHARS_PER_WORD) {
      const w = s.slice(start, end);
      this.words.set(w, (this.words.get(w) ?? 0) + 1);
    }
    return false;
  }

  special(): boolean {
    return false;
  }
}

/**
 * Builds a vocab.txt token list from texts: the 5 special tokens first ([PAD]
 * at 0), then CJK characters, punctuation and word pieces by frequency (ties
 * broken by token string), at most `size` entries in all, each seen at least
 * `minFrequency` times (default 1).
 *
 * Characters inside non-CJK words get both a word-initial entry ("a") and a
 * continuation entry ("##a"), so every word made of seen characters can be
 * WordPiece-encoded; multi-character words also get whole-word entries. When
 * `size` is too small for everything, these character-level entries are chosen
 * before whole words (by frequency within each group); the chosen entries are
 * then ordered by frequency.
 */
export async function buildVocab(
  texts: AsyncIterable<string> | Iterable<string>,
  options: { size: number; minFrequency?: number; lowercase?: boolean },
): Promise<string[]> {
  const { size } = options;
  const minFrequency = options.minFrequency ?? 1;
  const lowercase = options.lowercase ?? true;
  if (!Number.isInteger(size) || size < SPECIAL_TOKENS.length) {
    throw new RangeError(`buildVocab: size must be an integer ≥ ${SPECIAL_TOKENS.length}, got ${size}`);
  }
  if (!Number.isFinite(minFrequency) || minFrequency < 1) {
    throw new RangeError(`buildVocab: minFrequency must be ≥ 1, got ${minFrequency}`);
  }
  const counts = new CountSink();
  let index = 0;
  for await (const text of texts) {
    if (typeof text !== 'string') throw new TypeError(`buildVocab: text #${index} is not a string`);
    scan(text, lowercase, counts);
    index++;
  }

  // Character-level entries (needed to encode anything) and whole words.
  const basic = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, n: number) => map.set(key, (map.get(key) ?? 0) + n);
  for (const [cp, n] of counts.atoms) {
    let s = String.fromCodePoint(cp);
    if (lowercase && isCjkCodePoint(cp)) s = normalizeLower(s);
    add(basic, s, n);
  }
  for (const [cp, n] of counts.chars) {
    const s = String.fromCodePoint(cp);
    add(basic, s, n);
    add(basic, '##' + s, n);
  }
  const specials = new Set<string>(SPECIAL_TOKENS);
  const byFrequency = (a: [string, number], b: [string, number]) =>
    b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  const pick = (map: Map<string, number>, budget: number) =>
    [...map]
      .filter(([t, n]) => n >= minFrequency && !specials.has(t))
      .sort(byFrequency)
      .slice(0, Math.max(0, budget));

  let budget = size - SPECIAL_TOKENS.length;
  const chosen = pick(basic, budget);
  budget -= chosen.length;
  if (budget > 0) {
    for (const entry of pick(counts.words, budget)) if (!basic.has(entry[0])) chosen.push(entry);
  }
  chosen.sort(byFrequency);
  return [...SPECIAL_TOKENS, ...chosen.map(([t]) => t)];
}
