// The benchmark harness: RoFormerV2 and the RoBERTa-style baseline (and, with
// `gauAlpha`, GAU-α at the depth-equivalent size) through the same timed training
// step (or forward pass), alternated step by step so drift on a shared machine hits
// every model equally.
//
// Timing rules: warm-up steps are excluded; the device is synchronised before a
// clock is read (the trainer's step ends with a host sync; encode calls
// synchronize()); every step gets fresh random token ids (never zeros).

import { loadNative } from '../bindings/load.js';
import type { Device, DType } from '../bindings/native.js';
import { resolveConfig, type ModelSize, type RoFormerV2Config } from '../lib/model/config.js';
import type { EncoderConfig } from '../lib/model/encoder-config.js';
import { validateGauAlphaConfig, type GauAlphaConfig } from '../lib/model/gau-alpha-config.js';
import { GauAlpha, RobertaBaseline, RoFormerV2 } from '../lib/model/model.js';
import { Random } from '../lib/data/masking.js';
import { IGNORED_TARGET, targetSlotCount } from '../lib/data/pipeline.js';
import { tensor } from '../lib/model/tensor.js';
import { Trainer, type MicroBatch } from '../lib/training/trainer.js';

export type Mode = 'train' | 'encode';
export type Precision = 'fp32' | 'bf16' | 'fp16';
export type ModelName = 'roformer-v2' | 'roberta-baseline' | 'gau-alpha';

export interface BenchOptions {
  size: ModelSize;
  /** Overrides of the size's config (from --config). */
  config: Partial<RoFormerV2Config>;
  seqs: number[];
  batch: number;
  dtype: Precision;
  device: Device;
  steps: number;
  warmup: number;
  mode: Mode;
  /** Share of positions that are MLM targets in training (the head runs there only). */
  targetFraction: number;
  /** Also GAU-α, at the depth-equivalent of the RoFormerV2 config (gauAlphaEquivalent). */
  gauAlpha?: boolean;
}

/**
 * GAU-α at the depth-equivalent of a RoFormerV2 config, as the authors compare them:
 * the same width and vocab, twice the layers (a GAU layer holds about half a
 * transformer block's weights), e = 2 · hidden, s = 128.
 */
export function gauAlphaEquivalent(config: RoFormerV2Config): GauAlphaConfig {
  return validateGauAlphaConfig({
    vocab_size: config.vocab_size,
    hidden_size: config.hidden_size,
    num_hidden_layers: 2 * config.num_hidden_layers,
    intermediate_size: 2 * config.hidden_size,
    attention_key_size: 128,
    max_position_embeddings: config.max_position_embeddings,
  });
}

export interface ModelResult {
  model: ModelName;
  parameters: number;
  msPerStep: { median: number; p10: number; p90: number; min: number; max: number };
  tokensPerSecond: number;
  samplesPerSecond: number;
  /** Peak bytes allocated on the CUDA device during this model's steps (0 on CPU). */
  peakDeviceBytes: number;
  /** Model FLOPs per token (6·N + 12·L·s·d for training, a third of it for encoding). */
  flopsPerToken: number;
  /** Model FLOPs utilisation against the matmul peak measured in the same run. */
  mfu: number;
  /** Timed steps that replayed a CUDA graph (0 on the CPU, or with graphs off). */
  graphReplays: number;
  msSamples: number[];
}

export interface ConfigResult {
  seq: number;
  batch: number;
  roformer: ModelResult;
  baseline: ModelResult;
  /** With `gauAlpha`: GAU-α's result, and its speed over RoFormerV2's (median of paired steps). */
  gauAlpha?: ModelResult;
  gauSpeedRatio?: number;
  /**
   * RoFormerV2 speed over the baseline's: the median over step pairs of baseline ms /
   * RoFormerV2 ms. The two steps of a pair ran back to back, so machine drift cancels
   * in each ratio; the ratio of the two medians is noisier on a shared machine.
   */
  speedRatio: number;
  /** baseline median ms / RoFormerV2 median ms, for reference. */
  medianRatio: number;
  peakHostBytes: number;
}

const percentile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))]!;

export function summarise(samples: number[]): ModelResult['msPerStep'] {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: percentile(sorted, 0.5), p10: percentile(sorted, 0.1), p90: percentile(sorted, 0.9), min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

/** Matmul parameters N: the blocks' weight matrices (the tied head is counted where it runs). */
export function flopsPerToken(config: EncoderConfig, seq: number, mode: Mode, headFraction: number): number {
  const { hidden_size: d, intermediate_size: f, num_hidden_layers: L, vocab_size: V } = config;
  if (config.model_type === 'gau_alpha') {
    // W_i (d → 2e + s), W_o (e → d); attention: q kᵀ over s, A v over e, one head.
    const s = config.attention_key_size;
    const n = L * (d * (2 * f + s) + f * d) + headFraction * V * d;
    const training = 6 * n + 6 * L * seq * (s + f);
    return mode === 'train' ? training : training / 3;
  }
  const n = L * (4 * d * d + 2 * d * f) + headFraction * V * d;
  const training = 6 * n + 12 * L * seq * d;
  return mode === 'train' ? training : training / 3;
}

/** The matmul peak for the run's dtype and device (FLOP/s), measured now. */
export function measureMatmulPeak(dtype: Precision, device: Device): number {
  const native = loadNative();
  const n = device === 'cpu' ? 1024 : 8192;
  const torchDtype: DType = dtype === 'fp32' ? 'float32' : dtype === 'bf16' ? 'bfloat16' : 'float16';
  native.matmulSeconds(n, torchDtype, device, 2);
  const seconds = native.matmulSeconds(n, torchDtype, device, device === 'cpu' ? 10 : 50);
  return (2 * n ** 3) / seconds;
}

/**
 * A random MLM batch. Its targets come in a fixed number of slots for the shape, the data
 * pipeline's (targetSlotCount; unused slots ignored): a step shape that repeats is what lets the
 * trainer replay a CUDA graph instead of capturing anew.
 */
export function randomBatch(batch: number, seq: number, vocab: number, targetFraction: number, seed: number): MicroBatch {
  const random = new Random(seed);
  const next = () => random.next();
  const ids = new Int32Array(batch * seq);
  for (let i = 0; i < ids.length; i++) ids[i] = 5 + Math.floor(next() * (vocab - 5)); // never [PAD] = 0
  const positions: number[] = [];
  for (let i = 0; i < ids.length; i++) if (next() < targetFraction) positions.push(i);
  if (positions.length === 0) positions.push(0);
  const slots = targetSlotCount(batch, seq, positions.length, targetFraction);
  const targetPositions = new Int32Array(slots).fill(positions[0]!);
  const targetIds = new Int32Array(slots).fill(IGNORED_TARGET);
  positions.forEach((p, i) => {
    targetPositions[i] = p;
    targetIds[i] = ids[p]!;
  });
  return {
    inputIds: tensor(ids, [batch, seq], 'int64'),
    targetPositions: tensor(targetPositions, [slots], 'int64'),
    targetIds: tensor(targetIds, [slots], 'int64'),
  };
}

export interface Runner {
  name: ModelName;
  parameters: number;
  /** One step; true when it replayed a CUDA graph. */
  step(batch: MicroBatch): Promise<boolean>;
}

/** `trainer`: options for the training runner's Trainer beyond the benchmark's (e.g. cudaGraphs: false). */
export function makeRunner(name: ModelName, options: BenchOptions, config: RoFormerV2Config, trainer: { cudaGraphs?: boolean } = {}): Runner {
  const model =
    name === 'gau-alpha'
      ? GauAlpha.create({ config: gauAlphaEquivalent(config), seed: 0 })
      : (name === 'roformer-v2' ? RoFormerV2.create : RobertaBaseline.create)({ config, seed: 0 });
  if (options.device !== 'cpu') model.to(options.device);
  if (options.mode === 'train') {
    const training = new Trainer(model, { lr: 1e-4, precision: options.dtype, ...trainer });
    return { name, parameters: model.parameterCount, step: async (b) => (await training.step(b)).cudaGraph === 'replayed' };
  }
  // encode: forward only, weights in the benchmark dtype
  if (options.dtype !== 'fp32') model.to(options.device, options.dtype === 'bf16' ? 'bfloat16' : 'float16');
  model.eval();
  return {
    name,
    parameters: model.parameterCount,
    step: async (b) => {
      const hidden = await model.forward(b.inputIds);
      loadNative().synchronize(options.device);
      hidden.dispose();
      return false;
    },
  };
}

/** Runs every sequence length; `onProgress` reports each finished configuration. */
export async function runBenchmark(options: BenchOptions, onProgress?: (result: ConfigResult) => void): Promise<{ results: ConfigResult[]; matmulPeakFlops: number }> {
  const native = loadNative();
  const config = resolveConfig({ size: options.size, ...options.config });
  const matmulPeakFlops = measureMatmulPeak(options.dtype, options.device);
  const results: ConfigResult[] = [];
  for (const seq of options.seqs) {
    if (seq > config.max_position_embeddings) {
      throw new RangeError(`--seq ${seq} exceeds max_position_embeddings ${config.max_position_embeddings} (the baseline's position table)`);
    }
    const names: ModelName[] = ['roformer-v2', 'roberta-baseline', ...(options.gauAlpha ? (['gau-alpha'] as const) : [])];
    const runners = names.map((name) => makeRunner(name, options, config));
    const samples = new Map<ModelName, number[]>(runners.map((r) => [r.name, []]));
    const replays = new Map<ModelName, number>(runners.map((r) => [r.name, 0]));
    const peaks = new Map<ModelName, number>(runners.map((r) => [r.name, 0]));
    let peakHost = 0;
    for (let step = 0; step < options.warmup + options.steps; step++) {
      // Alternate the order every step so neither model always runs second.
      const order = step % 2 === 0 ? runners : [...runners].reverse();
      for (const runner of order) {
        const batch = randomBatch(options.batch, seq, config.vocab_size, options.targetFraction, step * names.length + names.indexOf(runner.name));
        native.peakMemory(options.device, true);
        native.synchronize(options.device);
        const start = performance.now();
        const replayed = await runner.step(batch);
        native.synchronize(options.device); // the optimiser's kernels may still be queued on a GPU
        const ms = performance.now() - start;
        if (replayed && step >= options.warmup) replays.set(runner.name, replays.get(runner.name)! + 1);
        peaks.set(runner.name, Math.max(peaks.get(runner.name)!, native.peakMemory(options.device)));
        peakHost = Math.max(peakHost, process.memoryUsage().rss);
        if (step >= options.warmup) samples.get(runner.name)!.push(ms);
        batch.inputIds.dispose();
        batch.targetPositions.dispose();
        batch.targetIds.dispose();
      }
    }
    const tokens = options.batch * seq;
    const headFraction = options.mode === 'train' ? options.targetFraction : 0;
    const result = (runner: Runner): ModelResult => {
      const ms = summarise(samples.get(runner.name)!);
      const perToken = flopsPerToken(runner.name === 'gau-alpha' ? gauAlphaEquivalent(config) : config, seq, options.mode, headFraction);
      const tokensPerSecond = (tokens / ms.median) * 1000;
      return {
        model: runner.name,
        parameters: runner.parameters,
        msPerStep: ms,
        tokensPerSecond,
        samplesPerSecond: (options.batch / ms.median) * 1000,
        peakDeviceBytes: peaks.get(runner.name)!,
        flopsPerToken: perToken,
        mfu: (perToken * tokensPerSecond) / matmulPeakFlops,
        graphReplays: replays.get(runner.name)!,
        msSamples: samples.get(runner.name)!,
      };
    };
    const [roformer, baseline] = [result(runners[0]!), result(runners[1]!)];
    const gauAlpha = runners[2] && result(runners[2]);
    const pairRatios = roformer.msSamples.map((ms, i) => baseline.msSamples[i]! / ms);
    const configResult: ConfigResult = {
      seq,
      batch: options.batch,
      roformer,
      baseline,
      ...(gauAlpha ? { gauAlpha, gauSpeedRatio: summarise(roformer.msSamples.map((ms, i) => ms / gauAlpha.msSamples[i]!)).median } : {}),
      speedRatio: summarise(pairRatios).median,
      medianRatio: baseline.msPerStep.median / roformer.msPerStep.median,
      peakHostBytes: peakHost,
    };
    results.push(configResult);
    onProgress?.(configResult);
  }
  return { results, matmulPeakFlops };
}
