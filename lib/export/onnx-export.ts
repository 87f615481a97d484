// `roformer export --format onnx`: a model as the folder transformers.js (and
// onnxruntime) loads: config.json, tokenizer.json, tokenizer_config.json, vocab.txt,
// and onnx/model.onnx (fp32 weights inside, dynamic batch and sequence axes).
// The graph ends in the MLM head, or in one classification/multilabel task head,
// which transformers.js then serves as a sequence classifier.

import { join } from 'node:path';

import type { Tensor } from '../../bindings/native.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { configToJson } from '../model/config.js';
import { CONFIG_FILE, VOCAB_FILE } from '../model/model-dir.js';
import { RoFormerV2, type TrainableEncoder } from '../model/model.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { encodeOnnxModel } from './onnx-proto.js';
import { roformerOnnxModel } from './roformer-graph.js';
import { tokenizerConfigJson, tokenizerJson } from './tokenizer-files.js';

/** Where transformers.js looks for the fp32 model inside a model folder. */
export const ONNX_MODEL_FILE = join('onnx', 'model.onnx');

/** A task head to export instead of the MLM head: [CLS] → Linear, no bias. */
export interface ExportedHead {
  task: string;
  /** multilabel (independent sigmoids) rather than classification (one softmax). */
  multiLabel: boolean;
  /** One name per label (label id = index). */
  labels: string[];
  /** (labels, hidden). */
  weight: Tensor;
}

/** Written into the model as its producer_version (package.json's version, as `roformer --version` says). */
const PRODUCER_VERSION = '0.1.0';

const json = (value: unknown) => [JSON.stringify(value, null, 2) + '\n'];

/** A tensor's values as float32 on the CPU, in an ArrayBuffer of their own. */
export function float32Values(t: Tensor): Float32Array {
  const asFloat32 = t.to('cpu', 'float32');
  try {
    const buffer = asFloat32.toBuffer();
    // A copy into its own ArrayBuffer: aligned for float32 whatever the Buffer's offset.
    return new Float32Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength));
  } finally {
    asFloat32.dispose();
  }
}

/** config.json: the model's, plus what a sequence classifier needs when a head is exported. */
function exportedConfig(model: RoFormerV2, head?: ExportedHead): Record<string, unknown> {
  const config = configToJson(model.savedConfig());
  if (!head) return config;
  return {
    ...config,
    architectures: ['RoFormerForSequenceClassification'],
    finetuning_task: head.task,
    problem_type: head.multiLabel ? 'multi_label_classification' : 'single_label_classification',
    id2label: Object.fromEntries(head.labels.map((label, i) => [String(i), label])),
    label2id: Object.fromEntries(head.labels.map((label, i) => [label, i])),
  };
}

/** Writes the folder; returns the files written (relative to `outDir`) and the model's size in bytes. */
export async function exportOnnx(
  model: TrainableEncoder,
  tokenizer: Tokenizer,
  outDir: string,
  head?: ExportedHead,
): Promise<{ files: string[]; modelBytes: number }> {
  if (!(model instanceof RoFormerV2)) throw new Error('the ONNX export writes RoFormerV2 graphs; GAU-α models cannot be exported yet');
  // The graph (roformer-graph.ts) is the released block: post-norm, softmax attention.
  if (model.config.normalization !== 'softmax' || model.config.norm_position !== 'post') {
    throw new Error(`the ONNX export writes post-norm softmax RoFormerV2 graphs; this model has normalization ${model.config.normalization}, norm_position ${model.config.norm_position}`);
  }
  await model.idle();
  const parameters = model.namedParameters();
  let bytes: Uint8Array;
  try {
    const weight = (name: string) => {
      const parameter = parameters[name];
      if (!parameter) throw new Error(`the model has no parameter ${name}`);
      return float32Values(parameter);
    };
    const classifier = head && { name: `heads.${head.task}.classifier.weight`, numLabels: head.labels.length, weight: float32Values(head.weight) };
    bytes = encodeOnnxModel(roformerOnnxModel({ config: model.config, residualScale: model.residualScale, weight }, PRODUCER_VERSION, classifier));
  } finally {
    for (const t of Object.values(parameters)) t.dispose();
  }

  await writeFileAtomic(join(outDir, ONNX_MODEL_FILE), [bytes]);
  await writeFileAtomic(join(outDir, CONFIG_FILE), json(exportedConfig(model, head)));
  await writeFileAtomic(join(outDir, 'tokenizer.json'), json(tokenizerJson(tokenizer)));
  await writeFileAtomic(join(outDir, 'tokenizer_config.json'), json(tokenizerConfigJson(tokenizer, model.config.max_position_embeddings)));
  await writeFileAtomic(join(outDir, VOCAB_FILE), [tokenizer.vocabFileText()]);
  return { files: [CONFIG_FILE, 'tokenizer.json', 'tokenizer_config.json', VOCAB_FILE, ONNX_MODEL_FILE], modelBytes: bytes.byteLength };
}
