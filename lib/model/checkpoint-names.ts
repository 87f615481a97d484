// Tensor names: the native module tree ⇄ the Hugging Face RoFormerV2 checkpoint, and
// ⇄ the GAU-α PyTorch port's (JunnYu/GAU-alpha-pytorch, `gau_alpha.` prefix).
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

/** GAU-α: the port's GAUAlphaForMaskedLM names. */
const GAU_ALPHA_NAME_TABLE: ReadonlyArray<readonly [native: string, port: string]> = [
  ['word_embeddings.weight', 'gau_alpha.embeddings.word_embeddings.weight'],
  ['token_type_embeddings.weight', 'gau_alpha.embeddings.token_type_embeddings.weight'],
  ['layer.{i}.gau.i_dense.weight', 'gau_alpha.encoder.layer.{i}.gau.i_dense.weight'],
  ['layer.{i}.gau.i_dense.bias', 'gau_alpha.encoder.layer.{i}.gau.i_dense.bias'],
  ['layer.{i}.gau.o_dense.weight', 'gau_alpha.encoder.layer.{i}.gau.o_dense.weight'],
  ['layer.{i}.gau.o_dense.bias', 'gau_alpha.encoder.layer.{i}.gau.o_dense.bias'],
  ['layer.{i}.gau.q_scaleoffset.weight', 'gau_alpha.encoder.layer.{i}.gau.q_scaleoffset.weight'],
  ['layer.{i}.gau.q_scaleoffset.bias', 'gau_alpha.encoder.layer.{i}.gau.q_scaleoffset.bias'],
  ['layer.{i}.gau.k_scaleoffset.weight', 'gau_alpha.encoder.layer.{i}.gau.k_scaleoffset.weight'],
  ['layer.{i}.gau.k_scaleoffset.bias', 'gau_alpha.encoder.layer.{i}.gau.k_scaleoffset.bias'],
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

type Rules = Array<{ from: RegExp; to: string }>;
const rulesOf = (table: typeof NAME_TABLE) => ({
  toHF: table.map(([native, hf]) => ({ from: pattern(native), to: hf })),
  fromHF: table.map(([native, hf]) => ({ from: pattern(hf), to: native })),
});
const { toHF: TO_HF, fromHF: FROM_HF } = rulesOf(NAME_TABLE);

function translate(name: string, rules: Rules): string | undefined {
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

/** One architecture's checkpoint naming: both directions, the word embeddings' name, the bare encoder's prefix. */
export interface CheckpointNames {
  toHuggingFace(nativeName: string): string;
  fromHuggingFace(name: string): string | undefined;
  /** The name the tied MLM decoder must equal. */
  wordEmbeddings: string;
  /** A bare encoder's name (`encoder.…`, `embeddings.…`) with the masked-LM model's prefix. */
  withModelPrefix(name: string): string;
}

const ROFORMER_NAMES: CheckpointNames = {
  toHuggingFace: toHuggingFaceName,
  fromHuggingFace: fromHuggingFaceName,
  wordEmbeddings: WORD_EMBEDDINGS_NAME,
  withModelPrefix: withRoformerPrefix,
};

const GAU_ALPHA_RULES = rulesOf(GAU_ALPHA_NAME_TABLE);
const GAU_ALPHA_NAMES: CheckpointNames = {
  toHuggingFace: (nativeName) => {
    const name = translate(nativeName, GAU_ALPHA_RULES.toHF);
    if (name === undefined) throw new Error(`no GAU-α port name for native parameter '${nativeName}'`);
    return name;
  },
  fromHuggingFace: (name) => translate(name, GAU_ALPHA_RULES.fromHF),
  wordEmbeddings: 'gau_alpha.embeddings.word_embeddings.weight',
  withModelPrefix: (name) => (/^(embeddings|encoder)\./.test(name) ? `gau_alpha.${name}` : name),
};

/** The checkpoint names of a config.json `model_type`. */
export function checkpointNamesOf(modelType: 'roformer' | 'gau_alpha'): CheckpointNames {
  return modelType === 'gau_alpha' ? GAU_ALPHA_NAMES : ROFORMER_NAMES;
}
