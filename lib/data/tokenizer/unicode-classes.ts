// What BERT's basic tokeniser does with each code point, as one small class
// number, looked up in a table so the scanner pays for Unicode property tests
// once per distinct character rather than once per occurrence.
//
// There are two modes: lower-casing (BERT's do_lower_case, which also strips
// accents) and cased. They differ only in which characters count as DIRTY.

/** Part of a word, unchanged by normalisation. */
export const WORD = 0;
/** Part of a word, changed by normalisation (upper case, accent, combining mark, …). */
export const DIRTY = 1;
/** Whitespace: ends a word. */
export const SPACE = 2;
/** Removed by cleaning (NUL, U+FFFD, control/format/unassigned/private/surrogate). */
export const DROP = 3;
/** CJK ideograph: its own token. */
export const CJK = 4;
/** Punctuation: its own token. */
export const PUNCT = 5;
/** '[': punctuation that may start a literal special token. */
export const BRACKET = 6;
/** Not classified yet (the tables fill lazily). */
const UNKNOWN = 255;

/** Table index of the cased mode (no lower-casing). */
export const CASED = 0;
/** Table index of the lower-casing mode. */
export const LOWERCASE = 1;

const RE_ZS = /^\p{Zs}$/u;
const RE_C = /^\p{C}$/u;
const RE_P = /^\p{P}$/u;
const RE_MN = /\p{Mn}/gu;

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
export function normalizeLower(s: string): string {
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

// Lazily filled class tables for the BMP (one per mode), and caches for astral
// code points, shared by every tokenizer.
const BMP_CLASS = [new Uint8Array(65536).fill(UNKNOWN), new Uint8Array(65536).fill(UNKNOWN)];
const ASTRAL_CLASS = [new Map<number, number>(), new Map<number, number>()];

/** The class of code point `cp` in `mode` (CASED or LOWERCASE). */
export function classOf(cp: number, mode: number): number {
  if (cp > 0xffff) return astralClass(cp, mode);
  let cls = BMP_CLASS[mode][cp];
  if (cls === UNKNOWN) cls = BMP_CLASS[mode][cp] = classify(cp, mode === LOWERCASE);
  return cls;
}

function astralClass(cp: number, mode: number): number {
  const cache = ASTRAL_CLASS[mode];
  let cls = cache.get(cp);
  if (cls === undefined) {
    cls = classify(cp, mode === LOWERCASE);
    cache.set(cp, cls);
  }
  return cls;
}
