// Tensor names: the native module tree ⇄ the Hugging Face RoFormerV2 checkpoint.
//
// A port that maps these wrongly loads without complaint and produces garbage,
// so the whole mapping is this one table, used in both directions, and the
// loader checks the key set strictly.

/** `{i}` stands for the layer index. */
const NAME_TABLE: ReadonlyArray<readonly [native: string, huggingFace: string]> = [
  ['word_embeddings.weight', 'roformer.embeddings.word_embeddings.weight'],
  ['token_type_embeddings.weight', 'roformer.embeddings.token_type_embeddings.weight'],
  ['layer.{i}.attention.query.weight', 'roformer.encoder.layer.{i}.attention.self.query.weight'],
  ['layer.{i}.attention.key.weight', 'roformer.encoder.layer.{i}.attention.self.key.weight'],
  ['layer.{i}.attention.value.weight', 'roformer.encoder.layer.{i}.attention.self.value.weight'],
  ['layer.{i}.attention.output.weight', 'roformer.encoder.layer.{i}.attention.output.dense.weight'],
  ['layer.{i}.intermediate.weight', 'roformer.encoder.layer.{i}.intermediate.dense.weight'],
  ['layer.{i}.output.weight', 'roformer.encoder.layer.{i}.output.dense.weight'],
];

/** The MLM decoder, tied to the word embeddings: written for compatibility, never a separate weight. */
export const TIED_DECODER_NAME = 'cls.predictions.decoder.weight';
export const WORD_EMBEDDINGS_NAME = 'roformer.embeddings.word_embeddings.weight';
/**
 * Hugging Face's RoFormer port stores its fixed sinusoidal table (max_position × head
 * size) as a weight; RoFormerV2 computes rotations on the fly, so the table is accepted
 * on load and ignored.
 */
export const SINUSOIDAL_TABLE_NAME = 'roformer.encoder.embed_positions.weight';

function pattern(template: string): RegExp {
  const escaped = template.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('\\{i\\}', '(\\d+)');
  return new RegExp(`^${escaped}$`);
}

const TO_HF = NAME_TABLE.map(([native, hf]) => ({ from: pattern(native), to: hf }));
const FROM_HF = NAME_TABLE.map(([native, hf]) => ({ from: pattern(hf), to: native }));

function translate(name: string, rules: typeof TO_HF): string | undefined {
  for (const rule of rules) {
    const match = rule.from.exec(name);
    if (match) return match[1] === undefined ? rule.to : rule.to.replace('{i}', match[1]);
  }
  return undefined;
}

/** The Hugging Face name of a native parameter; throws for a name outside the table. */
export function toHuggingFaceName(nativeName: string): string {
  const name = translate(nativeName, TO_HF);
  if (name === undefined) throw new Error(`no Hugging Face name for native parameter '${nativeName}'`);
  return name;
}

/** The native name of a Hugging Face tensor, or undefined if it is not a RoFormerV2 weight. */
export function fromHuggingFaceName(hfName: string): string | undefined {
  return translate(hfName, FROM_HF);
}

/**
 * RoFormerModel (the bare encoder) saves its weights without the `roformer.` prefix
 * that RoFormerForMaskedLM's carry: `encoder.layer.0.…`, `embeddings.…`. Both load.
 */
export function withRoformerPrefix(hfName: string): string {
  return /^(embeddings|encoder)\./.test(hfName) ? `roformer.${hfName}` : hfName;
}
