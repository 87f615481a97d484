// tokenizer.json and tokenizer_config.json for a vocab.txt, in the format Hugging Face's
// `tokenizers` (and transformers.js) read: the BERT pipeline our Tokenizer implements.
//
//   normalizer      BertNormalizer: clean text, CJK characters spaced apart,
//                   lower-case + strip accents (when the tokenizer lower-cases)
//   pre-tokenizer   BertPreTokenizer: split on whitespace and punctuation
//   model           WordPiece with ## continuations, [UNK] past 200 characters
//   post-processor  [CLS] A [SEP] (pairs: [CLS] A [SEP] B [SEP], B with segment 1)
// The special tokens are added tokens matched before normalisation, as our Tokenizer
// matches them case-sensitively in the raw text.

import { SPECIAL_TOKENS, MAX_CHARS_PER_WORD, type Tokenizer } from '../data/tokenizer.js';

export function tokenizerJson(tokenizer: Tokenizer): Record<string, unknown> {
  const id = (token: string) => tokenizer.tokenToId(token);
  const special = (token: string, typeId: number) => ({ SpecialToken: { id: token, type_id: typeId } });
  const sequence = (name: 'A' | 'B', typeId: number) => ({ Sequence: { id: name, type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((token) => ({
      id: id(token),
      content: token,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: tokenizer.lowercase,
      lowercase: tokenizer.lowercase,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special('[CLS]', 0), sequence('A', 0), special('[SEP]', 0)],
      pair: [special('[CLS]', 0), sequence('A', 0), special('[SEP]', 0), sequence('B', 1), special('[SEP]', 1)],
      special_tokens: Object.fromEntries(
        ['[CLS]', '[SEP]'].map((token) => [token, { id: token, ids: [id(token)], tokens: [token] }]),
      ),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: MAX_CHARS_PER_WORD,
      vocab: Object.fromEntries(tokenizer.tokens.map((token, i) => [token, i])),
    },
  };
}

/** tokenizer_config.json: the class and special tokens transformers (Python and JS) look up. */
export function tokenizerConfigJson(tokenizer: Tokenizer, maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'BertTokenizer',
    do_lower_case: tokenizer.lowercase,
    strip_accents: null,
    tokenize_chinese_chars: true,
    model_max_length: maxLength,
    unk_token: '[UNK]',
    sep_token: '[SEP]',
    pad_token: '[PAD]',
    cls_token: '[CLS]',
    mask_token: '[MASK]',
    clean_up_tokenization_spaces: true,
  };
}
