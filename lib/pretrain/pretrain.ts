// MLM pre-training: the stage behind `roformer pretrain`, plugged into the shared
// run loop (lib/training/run-loop.ts), which does the stepping, evaluation,
// checkpoints, resume, metrics and report.
//
//   corpus → tokenizer → MlmPipeline (length-grouped, dynamically masked batches)
//        → the MLM stage: training batches, held-out evaluation, vocab.txt in each checkpoint
//        → runTraining(trainer, stage)
//
// A run lives in one directory. `resume` continues it exactly: model, optimiser,
// random state and data position all come from the latest checkpoint.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { Corpus } from '../data/corpus.js';
import { ensureDemoCorpus } from '../data/demo-corpus.js';
import { jiebaSegmenter, MlmPipeline, type MlmBatch, type PipelinePosition } from '../data/pipeline.js';
import { buildVocab, Tokenizer } from '../data/tokenizer.js';
import type { Device, MicroBatch } from '../../bindings/native.js';
import { VOCAB_FILE } from '../model/model-dir.js';
import { RoFormerV2 } from '../model/model.js';
import type { EvalMetric } from '../training/metrics.js';
import { openRunDir, readRunConfig as readRunDirConfig, RUN_CONFIG_FILE, writeRunConfig } from '../training/run-dir.js';
import { runTraining, type EvalFigures, type RunEvent, type TrainingBatch, type TrainingStage } from '../training/run-loop.js';
import { linearWarmupDecay } from '../training/schedules.js';
import { Trainer } from '../training/trainer.js';
import { joinRanks, leaveRanks, type Distributed, type DistributedSettings } from '../training/distributed.js';
import type { PretrainConfig } from './config.js';

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
  model: RoFormerV2;
  tokenizer: Tokenizer;
}

export interface PretrainHooks {
  /** Continue the run in `config.out` from its latest checkpoint (required when there is one). */
  resume?: boolean;
  onEvent?: (event: PretrainEvent) => void;
  /** Aborting stops after the current step, with a checkpoint (Ctrl-C). */
  signal?: AbortSignal;
  /**
   * Data-parallel training: this rank's settings (distributedFromEnv()) or process group.
   * Each rank reads its own documents of the corpus; rank 0 writes the run directory.
   */
  distributed?: DistributedSettings | Distributed | null;
}

async function openCorpus(config: PretrainConfig): Promise<Corpus> {
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
  await mkdir(config.out, { recursive: true });
  const corpus = await openCorpus(config);
  const resumeFrom = await openRunDir(config.out, Boolean(hooks.resume));

  // The model and its vocab: the checkpoint's when resuming, new ones otherwise.
  const tokenizer = resumeFrom ? await Tokenizer.fromFile(join(resumeFrom, VOCAB_FILE)) : await prepareTokenizer(config, corpus);
  const model = resumeFrom
    ? (await RoFormerV2.fromPretrained(resumeFrom)).train()
    : RoFormerV2.create({ size: config.size, config: { ...config.model, vocab_size: tokenizer.size }, seed: config.seed });
  if (model.config.vocab_size !== tokenizer.size) {
    throw new Error(`the model's vocab_size (${model.config.vocab_size}) differs from the vocab's ${tokenizer.size} tokens`);
  }
  const place = await joinRanks(hooks.distributed, config.device as Device, config.seed);
  if (place.device !== 'cpu') model.to(place.device);
  const dist = place.dist;
  const shard = dist?.shard ?? { rank: 0, worldSize: 1 };
  // The settings this attempt runs with (e.g. a longer --steps) are the run's settings from now on.
  if (dist?.isWriter ?? true) await writeRunConfig(config.out, config);

  const trainer = new Trainer(model, {
    optimizer: config.optimizer,
    lr: linearWarmupDecay({ peak: config.lr, warmupSteps: Math.min(config.warmupSteps, config.steps), totalSteps: config.steps, final: config.finalLr }),
    weightDecay: config.weightDecay,
    maxGradNorm: config.maxGradNorm,
    alphaWarmupSteps: config.alphaWarmupSteps,
    precision: config.precision,
    distributed: dist,
  });
  const segmenter = config.masking === 'whole-word' ? await jiebaSegmenter() : undefined;
  const pipeline = new MlmPipeline(
    corpus,
    tokenizer,
    { maxLength: config.maxLength, batchSize: config.batchSize, masking: { scheme: config.masking, probability: config.maskProbability }, seed: config.seed + shard.rank, shard },
    segmenter,
  );
  const evalBatches = config.evalEvery > 0 ? await pipeline.evalBatches(config.evalBatches) : [];
  const stage = new MlmStage(pipeline, corpus, trainer, evalBatches, tokenizer.tokens.join('\n') + '\n');

  try {
    const result = await runTraining(trainer, stage, {
      out: config.out,
      steps: config.steps,
      accumulate: config.accumulate,
      evalEvery: config.evalEvery,
      saveEvery: config.saveEvery,
      keepLast: config.keepLast,
      resumeFrom,
      signal: hooks.signal,
      onEvent: hooks.onEvent && ((e) => hooks.onEvent!(e.type === 'start' ? { ...e, vocabSize: tokenizer.size } : e)),
      reportTitle: 'RoFormerV2 MLM pre-training',
      distributed: dist,
    });
    await leaveRanks(place, true);
    return {
      step: result.step,
      interrupted: result.interrupted,
      checkpoint: result.checkpoint,
      lastEval: result.lastEval[0] ?? null,
      loopOverhead: result.loopOverhead,
      model,
      tokenizer,
    };
  } finally {
    stage.dispose();
    await leaveRanks(place, false);
  }
}

/** The settings a run was started with (for --resume). */
export async function readRunConfig(out: string): Promise<PretrainConfig | null> {
  return readRunDirConfig<PretrainConfig>(out);
}
