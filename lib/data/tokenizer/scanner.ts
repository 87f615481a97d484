// BERT's basic tokenisation, as one pass over the text that streams its pieces
// (CJK characters and punctuation, words, literal special tokens) into a sink,
// without building arrays:
//   1. clean text: drop NUL, U+FFFD and control characters (Unicode category C*
//      except \t \n \r); whitespace (\t \n \r, category Zs, U+2028/U+2029) → space;
//   2. every CJK character (BERT's `_is_chinese_char` ranges) is its own piece;
//   3. lower-case and strip accents (NFD, drop category Mn), when asked;
//   4. every punctuation character is its own piece; the rest splits on whitespace.
//
// The text is scanned by code point against the class tables of
// unicode-classes.ts. A word made only of WORD characters is passed on as a
// range of the original text; a word that needs cleaning or normalisation
// (DIRTY or DROP characters inside) takes a slower string path.
//
// Every piece carries its [start, end) range in the original text (UTF-16
// units), for the offsets that spans and predictions need. Inside a normalised
// word these ranges cost a per-character normalisation, so the scanner works
// them out only for a sink that asks (`needsOrigins`); encoding and vocabulary
// counting don't.

import { BRACKET, CASED, CJK, classOf, DIRTY, DROP, isCjkCodePoint, LOWERCASE, normalizeLower, PUNCT, SPACE, WORD } from './unicode-classes.js';
import { matchSpecialAt, SPECIAL_TOKENS, specialEndsAt } from './special-tokens.js';

/** Where each UTF-16 unit k of a normalised word came from: the original range [from[k], to[k]). */
export interface Origin {
  from: number[];
  to: number[];
}

/** Receives the pieces of basic tokenisation, in order. Each method returns true to stop the scan. */
export interface ScanSink {
  /** Whether word() needs `origin` for normalised words, and atom() exact ranges inside them. */
  readonly needsOrigins: boolean;
  /**
   * A CJK character or punctuation mark (code point as written; CJK is not
   * normalised yet: see atomText) from the original text's [start, end). Inside a normalised
   * word, without `needsOrigins`, [start, end) is the whole word's range.
   */
  atom(cp: number, start: number, end: number): boolean;
  /**
   * A word s[start, end): already cleaned and normalised, `cps` code points
   * long. `origin` is null when s is the original text (unit k came from
   * [k, k + 1)), or when the sink does not need origins; otherwise unit k of s
   * came from the original range [origin.from[k], origin.to[k]).
   */
  word(s: string, start: number, end: number, cps: number, origin: Origin | null): boolean;
  /** A literal special token (index into SPECIAL_TOKENS) at the original [start, end). */
  special(index: number, start: number, end: number): boolean;
}

/**
 * The text of an atom as a token: CJK characters are normalised here (with
 * lower-casing, compatibility ideographs decompose under NFD: U+F900 → U+8C48,
 * as in BERT); punctuation that normalisation would change never is an atom
 * (it is DIRTY, part of a word), so the rest stand as written.
 */
export function atomText(cp: number, lowercase: boolean): string {
  const s = String.fromCodePoint(cp);
  return lowercase && isCjkCodePoint(cp) ? normalizeLower(s) : s;
}

/** BERT basic tokenisation of `text`, streamed into `sink`. */
export function scan(text: string, lowercase: boolean, sink: ScanSink): void {
  const mode = lowercase ? LOWERCASE : CASED;
  const n = text.length;
  let wordStart = -1; // start of the current word run, or -1
  let wordCps = 0; // its length in code points
  let dirty = false; // whether it needs the slow path
  // A word ends with `dirty ? scanDirtyWord(…) : sink.word(…)` written out at
  // each place: a helper function for it measured 10-15% slower on English words.
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
        cls = classOf(cp, mode);
      } else {
        cls = DROP; // lone surrogate
      }
    }
    if (cls === CJK || cls === PUNCT) {
      if (wordStart >= 0) {
        if (dirty ? scanDirtyWord(text, wordStart, i, lowercase, sink) : sink.word(text, wordStart, i, wordCps, null)) return;
        wordStart = -1;
      }
      if (sink.atom(cp, i, next)) return;
    } else if (cls === WORD || cls === DIRTY) {
      if (wordStart < 0) {
        wordStart = i;
        wordCps = 0;
        dirty = false;
      }
      wordCps++;
      if (cls === DIRTY) dirty = true;
    } else if (cls === DROP) {
      // Removed without splitting: "a\u200bb" is the word "ab".
      if (wordStart >= 0) dirty = true;
    } else {
      // SPACE or BRACKET: both end the current word.
      if (wordStart >= 0) {
        if (dirty ? scanDirtyWord(text, wordStart, i, lowercase, sink) : sink.word(text, wordStart, i, wordCps, null)) return;
        wordStart = -1;
      }
      if (cls === BRACKET) {
        const sp = matchSpecialAt(text, i);
        if (sp >= 0) {
          next = i + SPECIAL_TOKENS[sp].length;
          if (sink.special(sp, i, next)) return;
        } else if (sink.atom(cp, i, next)) {
          return;
        }
      }
    }
    i = next;
  }
  if (wordStart >= 0) {
    if (dirty) scanDirtyWord(text, wordStart, n, lowercase, sink);
    else sink.word(text, wordStart, n, wordCps, null);
  }
}

/**
 * A word that needs cleaning or normalisation: the slow string path. It may
 * split into several words and atoms (an accented punctuation mark, a
 * full-width letter that normalises to punctuation).
 *
 * With origins, the word is also normalised one original code point at a time
 * so each normalised unit knows its source character. If that ever differs
 * from normalising the whole word at once (canonical reordering of non-spacing
 * marks across characters, which are then dropped anyway), the pieces still
 * come from the whole-word form and every unit gets the whole word's range:
 * pieces stay exact, ranges become coarse rather than wrong.
 */
function scanDirtyWord(text: string, from: number, to: number, lowercase: boolean, sink: ScanSink): boolean {
  let origin: Origin | null = sink.needsOrigins ? { from: [], to: [] } : null;
  // Remove characters dropped by cleaning; resolve final sigma in BERT's context.
  let cleaned = '';
  let perChar = ''; // with origins: the word normalised character by character
  for (let i = from; i < to; ) {
    const cp = text.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    if (classOf(cp, CASED) !== DROP) {
      const ch = cp === 0x3a3 && lowercase ? (isFinalSigma(text, i) ? '\u03c2' : '\u03c3') : text.slice(i, i + w);
      cleaned += ch;
      if (origin) {
        const norm = lowercase ? normalizeLower(ch) : ch;
        perChar += norm;
        for (let k = 0; k < norm.length; k++) {
          origin.from.push(i);
          origin.to.push(i + w);
        }
        // A character normalised away (a combining accent) belongs to the one before it: "Cafe\u0301" is all "cafe".
        if (norm.length === 0 && origin.to.length > 0) origin.to[origin.to.length - 1] = i + w;
      }
    }
    i += w;
  }
  const s = lowercase ? normalizeLower(cleaned) : cleaned;
  if (origin && s !== perChar) {
    origin = { from: new Array<number>(s.length).fill(from), to: new Array<number>(s.length).fill(to) };
  }
  // Split on punctuation (and whitespace, which BERT's final whitespace split also does).
  let start = -1;
  let cps = 0;
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    const cls = classOf(cp, CASED);
    if (cls === PUNCT || cls === BRACKET || cls === SPACE || cls === CJK) {
      if (start >= 0) {
        if (sink.word(s, start, i, cps, origin)) return true;
        start = -1;
      }
      if (cls !== SPACE && sink.atom(cp, origin ? origin.from[i] : from, origin ? origin.to[i + w - 1] : to)) return true;
    } else if (cls !== DROP) {
      if (start < 0) {
        start = i;
        cps = 0;
      }
      cps++;
    }
    i += w;
  }
  return start >= 0 && sink.word(s, start, s.length, cps, origin);
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
    const cls = classOf(cp, CASED);
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
    if (cp === 0x5d && specialEndsAt(text, j + 1)) break;
    const k = kind(cp);
    if (k === 0) continue;
    before = k === 1;
    break;
  }
  if (!before) return false;
  for (let j = i + 1; j < text.length; ) {
    const cp = text.codePointAt(j)!;
    if (cp === 0x5b && matchSpecialAt(text, j) >= 0) break;
    const k = kind(cp);
    if (k === 0) {
      j += cp > 0xffff ? 2 : 1;
      continue;
    }
    return k !== 1;
  }
  return true;
}
