// A fixed number of training steps of one model on one device: the program that
// kernel-count.sh profiles, and a quick throughput probe. Prints one JSON line of the losses and
// the median step time (the figures are read once per step, after it, as the Trainer does).
//
//   node bench/gpu/steps.mjs --size base --dtype bf16 --batch 64 --seq 128 --warmup 2 --steps 4 [--device cuda] [--graphs on|off]
import { parseArgs } from 'node:util';

const { RoFormerV2, Trainer } = await import('../../dist/lib/index.js');
const { mlmBatch } = await import('./batch.mjs');
const { loadNative } = await import('../../dist/bindings/load.js');

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: 'base' },
    dtype: { type: 'string', default: 'bf16' },
    device: { type: 'string', default: 'cuda' },
    batch: { type: 'string', default: '64' },
    seq: { type: 'string', default: '128' },
    warmup: { type: 'string', default: '2' },
    steps: { type: 'string', default: '4' },
    seed: { type: 'string', default: '1' },
    graphs: { type: 'string', default: 'on' },
  },
});
const [batch, seq, warmup, steps, seed] = ['batch', 'seq', 'warmup', 'steps', 'seed'].map((k) => {
  const n = Number(values[k]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${k} must be a non-negative integer, got '${values[k]}'`);
  return n;
});

const model = RoFormerV2.create({ size: values.size, seed, config: { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } }).to(values.device);
if (!['on', 'off'].includes(values.graphs)) throw new Error(`--graphs takes on or off, got '${values.graphs}'`);
// Graphs on: the trainer's default on CUDA (where graphs apply); off: every step launches its kernels.
const trainer = new Trainer(model, { lr: 1e-4, precision: values.dtype, ...(values.graphs === 'off' ? { cudaGraphs: false } : {}) });
const vocab = model.config.vocab_size;
const losses = [];
const ms = [];
for (let i = 0; i < warmup + steps; i++) {
  const started = performance.now();
  const r = await trainer.step(mlmBatch(vocab, batch, seq, i));
  loadNative().synchronize(values.device);
  if (i >= warmup) ms.push(performance.now() - started);
  losses.push(r.loss);
}
ms.sort((a, b) => a - b);
const median = ms.length ? ms[Math.floor(ms.length / 2)] : null;
console.log(JSON.stringify({ size: values.size, dtype: values.dtype, batch, seq, warmup, steps, losses, msPerStep: median, tokensPerSecond: median ? (batch * seq * 1000) / median : null }));
