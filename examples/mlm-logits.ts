// The README's snippet: load a model dir and compute MLM logits for token ids.
// Run with `npm run example` (it first writes a freshly initialised small model
// to ./my-model if there is none; a trained one is what `roformer pretrain` will write).
import { existsSync } from 'node:fs';

import { RoFormerV2, tensor } from '../lib/index.js';

const dir = process.argv[2] ?? 'my-model';
if (!existsSync(dir)) await RoFormerV2.create({ size: 'small', seed: 0 }).save(dir);

const model = await RoFormerV2.fromPretrained(dir);
// [CLS]=2 … [SEP]=3 in the spec's vocab layout, padded with [PAD]=0; [MASK]=4 at position 2
const inputIds = tensor([[2, 791, 4, 1921, 3, 0]], undefined, 'int64');
const hidden = await model.forward(inputIds); // (1, 6, 384)
const logits = await model.mlmLogits(hidden, tensor([2], undefined, 'int64')); // (1, 12000): the [MASK] row
const scores = logits.toArray() as Float32Array;
const top = [...scores.keys()].sort((a, b) => scores[b]! - scores[a]!).slice(0, 5);
console.log(`hidden ${JSON.stringify(hidden.shape)}, logits ${JSON.stringify(logits.shape)}`);
console.log(`top-5 token ids at the [MASK]: ${top.join(', ')}`);
