// MLM pre-training: the stage behind `roformer pretrain`, plugged into the shared
// run loop (lib/training/run-loop.ts), which does the stepping, evaluation,
// checkpoints, resume, metrics and report.
//
//   corpus → tokenizer → MlmPipeline (length-grouped or packed, dynamically masked batches)
//        → the MLM stage: training batches, held-out evaluation, vocab.txt in each checkpoint
//        → runTraining(trainer, stage)
//
// The run itself (run dir, ranks, trainer, loop, resume, teardown) is runStage()'s
// (lib/training/stage.ts); `resume` continues a run exactly: model, optimiser,
// random state and data position all come from the latest checkpoint.

import { join } from 'node:path';

import { Corpus } from '../data/corpus.js';
import { ensureDemoCorpus } from '../data/demo-corpus.js';
import { jiebaSegmenter, MlmPipeline, type MlmBatch, type PipelinePosition } from '../data/pipeline.js';
import { buildVocab, Tokenizer } from '../data/tokenizer.js';
import type { Device, MicroBatch } from '../../bindings/native.js';
import { VOCAB_FILE } from '../model/model-dir.js';
import { createEncoder, loadPretrained, type TrainableEncoder } from '../model/model.js';
import type { EvalMetric } from '../training/metrics.js';
import { readRunConfig as readRunDirConfig, RUN_CONFIG_FILE } from '../training/run-dir.js';
import type { EvalFigures, RunEvent, TrainingBatch, TrainingStage } from '../training/run-loop.js';
import { linearWarmupDecay } from '../training/schedules.js';
import { runStage, type StageHooks } from '../training/stage.js';
import type { Trainer } from '../training/trainer.js';
import { checkPretrainConfig, type PretrainConfig } from './config.js';

export { RUN_CONFIG_FILE };

/** The run loop's events; the start event also names the vocab size. */
export type PretrainEvent = Exclude<RunEvent, { type: 'start' }> | (Extract<RunEvent, { type: 'start' }> & { vocabSize: number });

export interface PretrainResult {
  step: number;
  interrupted: boolean;
  checkpoint: string;
  lastEval: EvalMetric | null;
  /** Time spent in JS between native steps, over the native step time (evaluation and saving excluded). */
  loopOverhead: number;
  model: TrainableEncoder;
  tokenizer: Tokenizer;
}

/** The stage hooks (lib/training/stage.ts); data-parallel, each rank reads its own documents of the corpus. */
export type PretrainHooks = StageHooks<PretrainEvent>;

/** The run's corpus (the demo's own when --demo has none), split into training and held-out documents as the run splits it. */
export async function openCorpus(config: PretrainConfig): Promise<Corpus> {
  const paths = config.demo && config.corpus.length === 0 ? await ensureDemoCorpus(join(config.out, 'corpus')) : config.corpus;
  return Corpus.open({
    paths,
    format: config.format,
    field: config.field,
    documents: config.documents,
    evalFraction: config.evalFraction,
  });
}

/** A vocab of `size` tokens built from one pass over the corpus (up to `maxBytes` of text). */
export async function buildCorpusVocab(corpus: Corpus, size: number, maxBytes = Infinity): Promise<Tokenizer> {
  async function* onePass() {
    let bytes = 0;
    for await (const doc of corpus.train()) {
      if (doc.position.epoch > 0 || bytes > maxBytes) return;
      bytes += Buffer.byteLength(doc.text);
      yield doc.text;
    }
  }
  return Tokenizer.fromTokens(await buildVocab(onePass(), { size }), 'built from the corpus');
}

/**
 * --pack's default. Packing several documents per row pays when rows would otherwise be mostly
 * padding and the device's attention cost does not grow with the row: on CUDA, when the median
 * document fills less than half a row. On the CPU it is off: measured on the Tang shi
 * (bench/packing.ts), grouping by length already leaves ~98% real tokens, while packed rows make
 * attention's work per token longer, so packing ran at 0.58–0.74× the real tokens/s there.
 */
async function packingPays(corpus: Corpus, tokenizer: Tokenizer, maxLength: number, device: string, note: (message: string) => void): Promise<boolean> {
  if (!device.startsWith('cuda')) return false;
  const median = await new MlmPipeline(corpus, tokenizer, { maxLength }).medianLength();
  const pack = median < maxLength / 2;
  note(`the median document has ${median} tokens of --max-length ${maxLength}: ${pack ? 'packing several documents per row (--no-pack: one per row)' : 'one document per row (--pack: several)'}`);
  return pack;
}

/** The vocab: a given vocab.txt, or one built from (up to ~50 MB of) the corpus. */
async function prepareTokenizer(config: PretrainConfig, corpus: Corpus): Promise<Tokenizer> {
  return config.vocab ? Tokenizer.fromFile(config.vocab) : buildCorpusVocab(corpus, config.vocabSize, 50e6);
}

/**
 * The MLM stage: masked batches streamed from the corpus, held-out loss /
 * perplexity / masked-token accuracy on fixed evaluation batches, and the vocab
 * saved with every checkpoint so that each one is a usable model dir.
 */
class MlmStage implements TrainingStage<MicroBatch> {
  private batches: AsyncGenerator<MlmBatch> | undefined;
  private position: PipelinePosition | undefined;

  constructor(
    private readonly pipeline: MlmPipeline,
    private readonly corpus: Corpus,
    private readonly trainer: Trainer,
    private readonly evalBatches: MlmBatch[],
    private readonly vocabText: string,
  ) {}

  resumeAt(dataPosition: unknown): void {
    this.position = (dataPosition ?? undefined) as PipelinePosition | undefined;
  }

  async nextBatch(): Promise<TrainingBatch<MicroBatch>> {
    this.batches ??= this.pipeline.batches(this.position);
    const next = await this.batches.next();
    // The corpus cycles through epochs: running out means it has no training documents at all.
    if (next.done) throw new Error('the corpus ran out of training documents');
    const batch = next.value;
    return { microBatch: batch.microBatch, tokens: batch.tokens, dataPosition: batch.resume, dispose: () => batch.dispose() };
  }

  async evaluate(): Promise<EvalFigures[]> {
    if (this.evalBatches.length === 0) return [];
    let lossSum = 0;
    let correct = 0;
    let targets = 0;
    for (const batch of this.evalBatches) {
      const r = await this.trainer.evaluate(batch.microBatch);
      lossSum += r.lossSum;
      correct += r.correct;
      targets += r.targets;
    }
    const loss = lossSum / Math.max(1, targets);
    return [{ loss, perplexity: Math.exp(loss), accuracy: correct / Math.max(1, targets), targets }];
  }

  checkpointFiles(): Record<string, string> {
    return { [VOCAB_FILE]: this.vocabText };
  }

  problems() {
    const examples = this.corpus.problems.slice(0, 5).map((p) => `${p.file}:${p.line}: ${p.reason}`);
    return { count: this.corpus.problemCount, examples };
  }

  dispose(): void {
    this.evalBatches.forEach((b) => b.dispose());
  }
}

export async function pretrain(config: PretrainConfig, hooks: PretrainHooks = {}): Promise<PretrainResult> {
  config = checkPretrainConfig(config);
  const corpus = await openCorpus(config);
  let vocabSize = 0; // the start event names it; known once the vocab is
  const onEvent = hooks.onEvent && ((e: RunEvent) => hooks.onEvent!(e.type === 'start' ? { ...e, vocabSize } : e));
  return runStage({ out: config.out, device: config.device as Device, seed: config.seed, runConfig: config }, { ...hooks, onEvent }, {
    // The model and its vocab: the checkpoint's when resuming, new ones otherwise.
    async prepare(resumeFrom) {
      const tokenizer = resumeFrom ? await Tokenizer.fromFile(join(resumeFrom, VOCAB_FILE)) : await prepareTokenizer(config, corpus);
      const model = resumeFrom
        ? (await loadPretrained(resumeFrom)).train()
        : createEncoder({ size: config.size, config: { ...config.model, vocab_size: tokenizer.size }, seed: config.seed });
      if (model.config.vocab_size !== tokenizer.size) {
        throw new Error(`the model's vocab_size (${model.config.vocab_size}) differs from the vocab's ${tokenizer.size} tokens`);
      }
      vocabSize = tokenizer.size;
      return { model, tokenizer };
    },
    async plan({ model, tokenizer }, { shard, note }) {
      return {
        trainer: {
          optimizer: config.optimizer,
          lr: linearWarmupDecay({ peak: config.lr, warmupSteps: Math.min(config.warmupSteps, config.steps), totalSteps: config.steps, final: config.finalLr }),
          weightDecay: config.weightDecay,
          maxGradNorm: config.maxGradNorm,
          alphaWarmupSteps: config.alphaWarmupSteps,
          precision: config.precision,
          ...(config.cudaGraphs == null ? {} : { cudaGraphs: config.cudaGraphs }), // null (or absent from an older run's config): the trainer's default
        },
        loop: {
          steps: config.steps,
          accumulate: config.accumulate,
          evalEvery: config.evalEvery,
          saveEvery: config.saveEvery,
          keepLast: config.keepLast,
          reportTitle: `${model.config.model_type === 'gau_alpha' ? 'GAU-α' : 'RoFormerV2'} MLM pre-training`,
        },
        async stage(trainer) {
          const segmenter = config.masking === 'whole-word' ? await jiebaSegmenter() : undefined;
          const masking = { scheme: config.masking, probability: config.maskProbability };
          const pack = config.pack ?? (await packingPays(corpus, tokenizer, config.maxLength, config.device, note));
          // Few batch shapes where each gets a CUDA graph (the trainer's default on CUDA).
          const lengthBuckets = config.device.startsWith('cuda') && config.cudaGraphs !== false;
          const pipeline = new MlmPipeline(corpus, tokenizer, { maxLength: config.maxLength, batchSize: config.batchSize, masking, seed: config.seed + shard.rank, shard, pack, lengthBuckets }, segmenter);
          const evalBatches = config.evalEvery > 0 ? await pipeline.evalBatches(config.evalBatches, undefined, config.evalMaskProbability ?? undefined) : [];
          return new MlmStage(pipeline, corpus, trainer, evalBatches, tokenizer.vocabFileText());
        },
        async finish(run) {
          return {
            step: run.step,
            interrupted: run.interrupted,
            checkpoint: run.checkpoint,
            lastEval: run.lastEval[0] ?? null,
            loopOverhead: run.loopOverhead,
            model,
            tokenizer,
          };
        },
      };
    },
  });
}

/** The settings a run was started with (for --resume). */
export async function readRunConfig(out: string): Promise<PretrainConfig | null> {
  return readRunDirConfig<PretrainConfig>(out);
}
