// `roformer export --format onnx`: a model as the folder transformers.js (and
// onnxruntime) loads: config.json, tokenizer.json, tokenizer_config.json, vocab.txt,
// and onnx/model.onnx (fp32 weights inside, dynamic batch and sequence axes).

import { join } from 'node:path';

import type { Tokenizer } from '../data/tokenizer.js';
import { configToJson } from '../model/config.js';
import { CONFIG_FILE, VOCAB_FILE } from '../model/model-dir.js';
import type { RoFormerV2 } from '../model/model.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { encodeOnnxModel } from './onnx-proto.js';
import { roformerMlmModel } from './roformer-graph.js';
import { tokenizerConfigJson, tokenizerJson } from './tokenizer-files.js';

/** Where transformers.js looks for the fp32 model inside a model folder. */
export const ONNX_MODEL_FILE = join('onnx', 'model.onnx');

const json = (value: unknown) => [JSON.stringify(value, null, 2) + '\n'];

/** Writes the folder; returns the files written (relative to `outDir`) and the model's size in bytes. */
export async function exportOnnx(model: RoFormerV2, tokenizer: Tokenizer, outDir: string): Promise<{ files: string[]; modelBytes: number }> {
  await model.idle();
  const parameters = model.namedParameters();
  let bytes: Uint8Array;
  try {
    const onnx = roformerMlmModel(
      {
        config: model.config,
        residualScale: model.residualScale,
        weight: (name) => {
          const parameter = parameters[name];
          if (!parameter) throw new Error(`the model has no parameter ${name}`);
          const asFloat32 = parameter.to('cpu', 'float32');
          try {
            const buffer = asFloat32.toBuffer();
            // A copy into its own ArrayBuffer: aligned for float32 whatever the Buffer's offset.
            return new Float32Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength));
          } finally {
            asFloat32.dispose();
          }
        },
      },
      '0.1.0',
    );
    bytes = encodeOnnxModel(onnx);
  } finally {
    for (const t of Object.values(parameters)) t.dispose();
  }

  const config = model.savedConfig();
  await writeFileAtomic(join(outDir, ONNX_MODEL_FILE), [bytes]);
  await writeFileAtomic(join(outDir, CONFIG_FILE), json(configToJson(config)));
  await writeFileAtomic(join(outDir, 'tokenizer.json'), json(tokenizerJson(tokenizer)));
  await writeFileAtomic(join(outDir, 'tokenizer_config.json'), json(tokenizerConfigJson(tokenizer, config.max_position_embeddings)));
  await writeFileAtomic(join(outDir, VOCAB_FILE), [tokenizer.vocabFileText()]);
  return { files: [CONFIG_FILE, 'tokenizer.json', 'tokenizer_config.json', VOCAB_FILE, ONNX_MODEL_FILE], modelBytes: bytes.byteLength };
}
