// BERT's special tokens. Their literal strings in text are kept as single
// tokens (case-sensitively, before lower-casing), like Hugging Face's added tokens.

export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;
export type SpecialToken = (typeof SPECIAL_TOKENS)[number];

/** Index into SPECIAL_TOKENS of the literal special token starting at text[i] ('['), or -1. */
export function matchSpecialAt(text: string, i: number): number {
  switch (text.charCodeAt(i + 1)) {
    case 0x50: return text.startsWith('[PAD]', i) ? 0 : -1; // P
    case 0x55: return text.startsWith('[UNK]', i) ? 1 : -1; // U
    case 0x43: return text.startsWith('[CLS]', i) ? 2 : -1; // C
    case 0x53: return text.startsWith('[SEP]', i) ? 3 : -1; // S
    case 0x4d: return text.startsWith('[MASK]', i) ? 4 : -1; // M
    default: return -1;
  }
}

/** Whether a literal special token ends at text[end - 1] (a ']'). */
export function specialEndsAt(text: string, end: number): boolean {
  return SPECIAL_TOKENS.some((t) => end >= t.length && text.startsWith(t, end - t.length));
}
