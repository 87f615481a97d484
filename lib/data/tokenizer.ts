// BERT-style tokenizer (BERT-Chinese / RoFormerV2 compatible), pure TypeScript.
// This is its public entry; the parts live in lib/data/tokenizer/:
//
//   unicode-classes.ts  what each code point is to BERT (word, space, dropped,
//                       CJK, punctuation), in lazily filled tables
//   special-tokens.ts   [PAD] [UNK] [CLS] [SEP] [MASK], and finding them in text
//   scanner.ts          BERT's basic tokenisation: cleaning, CJK and punctuation
//                       splitting, lower-casing and accent stripping, in one pass
//                       that streams pieces (with their offsets) into a sink
//   wordpiece.ts        greedy longest-match-first WordPiece over a hashed trie
//   tokenizer.ts        the Tokenizer class: vocabulary, encode/decode, offsets
//   vocab-building.ts   a vocabulary built from a corpus
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

export { SPECIAL_TOKENS, type SpecialToken } from './tokenizer/special-tokens.js';
export { isCjkCodePoint, isPunctuationCodePoint } from './tokenizer/unicode-classes.js';
export { MAX_CHARS_PER_WORD } from './tokenizer/wordpiece.js';
export {
  Tokenizer,
  TokenizerError,
  VOCAB_FILE,
  type TokenizerOptions,
  type TokensWithOffsets,
} from './tokenizer/tokenizer.js';
export { buildVocab } from './tokenizer/vocab-building.js';
