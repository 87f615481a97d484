// The shortest sequence any stage trains on or encodes for a task.
//
// 4 tokens: [CLS], [SEP] and the [SEP] between the two texts of a sentence pair, plus at
// least one token of text. Anything shorter leaves a pair no text at all (and an MLM
// sample, [CLS] x [SEP] at 3, only one token to mask); the tokenizer's own floor of 2
// (an empty [CLS] [SEP]) is the encoding's, not a length to train with.
export const MIN_SEQUENCE_LENGTH = 4;
