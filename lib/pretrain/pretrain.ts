// MLM pre-training: the training loop behind `roformer pretrain`.
//
//   corpus → tokenizer → MlmPipeline (length-grouped, dynamically masked batches)
//        → Trainer.step (native, off the JS thread; the next batch is prepared meanwhile)
//        → metrics.jsonl, report.svg, evaluation on held-out text, checkpoints
//
// A run lives in one directory. `resume` continues it exactly: model, optimiser,
// random state and data position all come from the latest checkpoint.

import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { resolveCheckpointDir } from '../training/checkpoint.js';
import { Corpus } from '../data/corpus.js';
import { ensureDemoCorpus } from '../data/demo-corpus.js';
import { RoFormerV2 } from '../model/model.js';
import { jiebaSegmenter, MlmPipeline, type MlmBatch, type PipelinePosition } from '../data/pipeline.js';
import type { PretrainConfig } from './config.js';
import { appendMetric, readMetrics, writeReport, type EvalMetric, type TrainMetric } from '../training/report.js';
import { linearWarmupDecay } from '../training/schedules.js';
import { buildVocab, Tokenizer } from '../data/tokenizer.js';
import { Trainer } from '../training/trainer.js';

export const RUN_CONFIG_FILE = 'run_config.json';

export type PretrainEvent =
  | { type: 'start'; step: number; steps: number; parameters: number; vocabSize: number; resumedFrom: string | null }
  | ({ type: 'step'; steps: number; etaSeconds: number } & Omit<TrainMetric, 'type'>)
  | ({ type: 'eval' } & EvalMetric)
  | { type: 'checkpoint'; step: number; dir: string }
  | { type: 'problems'; count: number; examples: string[] };

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

async function evaluate(trainer: Trainer, batches: MlmBatch[], step: number): Promise<EvalMetric> {
  let lossSum = 0;
  let correct = 0;
  let targets = 0;
  for (const batch of batches) {
    const r = await trainer.evaluate(batch.microBatch);
    lossSum += r.lossSum;
    correct += r.correct;
    targets += r.targets;
  }
  const loss = lossSum / Math.max(1, targets);
  return { type: 'eval', step, loss, perplexity: Math.exp(loss), accuracy: correct / Math.max(1, targets), targets };
}

export async function pretrain(config: PretrainConfig, hooks: PretrainHooks = {}): Promise<PretrainResult> {
  const emit = hooks.onEvent ?? (() => {});
  await mkdir(config.out, { recursive: true });
  const metricsPath = join(config.out, 'metrics.jsonl');
  const reportPath = join(config.out, 'report.svg');
  const corpus = await openCorpus(config);

  // A new run, or the continuation of the one in `out`.
  let resumeFrom: string | null = null;
  if (hooks.resume) {
    if (!existsSync(join(config.out, 'latest'))) {
      throw new Error(`--resume: ${config.out} is not a run with a checkpoint (no ${join(config.out, 'latest')})`);
    }
    resumeFrom = await resolveCheckpointDir(config.out);
  } else if (existsSync(join(config.out, 'latest'))) {
    throw new Error(`${config.out} already holds a run: pass --resume to continue it, or choose another --out`);
  }
  let tokenizer: Tokenizer;
  let model: RoFormerV2;
  if (resumeFrom) {
    tokenizer = await Tokenizer.fromFile(join(resumeFrom, 'vocab.txt'));
    model = (await RoFormerV2.fromPretrained(resumeFrom)).train();
  } else {
    tokenizer = await prepareTokenizer(config, corpus);
    model = RoFormerV2.create({ size: config.size, config: { ...config.model, vocab_size: tokenizer.size }, seed: config.seed });
    await writeFile(join(config.out, RUN_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
    await writeFile(metricsPath, '');
  }
  if (model.config.vocab_size !== tokenizer.size) {
    throw new Error(`the model's vocab_size (${model.config.vocab_size}) differs from the vocab's ${tokenizer.size} tokens`);
  }
  if (config.device !== 'cpu') model.to(config.device);
  const vocabText = tokenizer.tokens.join('\n') + '\n';

  const trainer = new Trainer(model, {
    optimizer: config.optimizer,
    lr: linearWarmupDecay({ peak: config.lr, warmupSteps: Math.min(config.warmupSteps, config.steps), totalSteps: config.steps, final: config.finalLr }),
    weightDecay: config.weightDecay,
    maxGradNorm: config.maxGradNorm,
    alphaWarmupSteps: config.alphaWarmupSteps,
    precision: config.precision,
  });
  let position: PipelinePosition | undefined;
  if (resumeFrom) {
    // The settings this attempt runs with (e.g. a longer --steps) are the run's settings from now on.
    await writeFile(join(config.out, RUN_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
    const restored = await trainer.load(resumeFrom);
    position = restored.dataPosition as PipelinePosition;
    // metrics of steps after the checkpoint belong to the interrupted attempt: drop them
    const kept = (await readMetrics(metricsPath)).filter((m) => m.step <= restored.step);
    await writeFile(metricsPath, kept.map((m) => JSON.stringify(m) + '\n').join(''));
  }

  const segmenter = config.masking === 'whole-word' ? await jiebaSegmenter() : undefined;
  const pipeline = new MlmPipeline(
    corpus,
    tokenizer,
    { maxLength: config.maxLength, batchSize: config.batchSize, masking: { scheme: config.masking, probability: config.maskProbability }, seed: config.seed },
    segmenter,
  );
  const evalBatches = config.evalEvery > 0 ? await pipeline.evalBatches(config.evalBatches) : [];
  const batches = pipeline.batches(position);
  emit({ type: 'start', step: trainer.globalStep, steps: config.steps, parameters: model.parameterCount, vocabSize: tokenizer.size, resumedFrom: resumeFrom });

  const nextMicroBatches = async (): Promise<MlmBatch[]> => {
    const list: MlmBatch[] = [];
    for (let i = 0; i < config.accumulate; i++) {
      const next = await batches.next();
      if (next.done) throw new Error('the corpus ran out of training documents');
      list.push(next.value);
    }
    return list;
  };
  const save = async (resume: PipelinePosition | undefined) => {
    const dir = await trainer.save(config.out, { dataPosition: resume ?? position ?? null, files: { 'vocab.txt': vocabText }, keepLast: config.keepLast });
    emit({ type: 'checkpoint', step: trainer.globalStep, dir });
    return dir;
  };
  const writeMetricsReport = async () => writeReport(reportPath, await readMetrics(metricsPath));

  let lastEval: EvalMetric | null = null;
  let lastResume: PipelinePosition | undefined = position;
  let lastCheckpoint = resumeFrom ?? '';
  let interrupted = false;
  // For the loop-overhead figure: JS time between steps, with evaluation and saving left out.
  let nativeSeconds = 0;
  let betweenSeconds = 0;
  let lastStepEnd: number | null = null;
  let excludedMs = 0;
  const runStart = performance.now();
  const startStep = trainer.globalStep;
  if (startStep === 0 && evalBatches.length > 0) {
    lastEval = await evaluate(trainer, evalBatches, 0);
    await appendMetric(metricsPath, lastEval);
    emit(lastEval);
  }

  let pending = trainer.globalStep < config.steps ? nextMicroBatches() : null;
  while (pending && trainer.globalStep < config.steps) {
    const microBatches = await pending;
    const stepStart = performance.now();
    if (lastStepEnd !== null) betweenSeconds += (stepStart - lastStepEnd - excludedMs) / 1000;
    excludedMs = 0;
    const stepPromise = trainer.step(microBatches.map((b) => b.microBatch));
    // Prepare the next batch while the native step runs on its worker thread.
    // Always prefetch: whether another step is needed is known only after this one (a skipped step doesn't count).
    pending = nextMicroBatches();
    pending?.catch(() => undefined); // surfaced when awaited
    const result = await stepPromise;
    lastStepEnd = performance.now();
    const stepSeconds = (lastStepEnd - stepStart) / 1000;
    nativeSeconds += stepSeconds;
    microBatches.forEach((b) => b.dispose());
    lastResume = microBatches[microBatches.length - 1]!.resume;

    const step = result.step;
    const tokens = microBatches.reduce((n, b) => n + b.tokens, 0);
    const elapsed = (performance.now() - runStart) / 1000;
    const metric: TrainMetric = {
      type: 'train',
      step,
      loss: result.loss,
      lr: result.lr,
      alpha: result.alpha,
      gradNorm: result.gradNorm,
      tokensPerSecond: tokens / stepSeconds,
      skipped: result.skipped,
      elapsedSeconds: elapsed,
    };
    await appendMetric(metricsPath, metric);
    const done = step - startStep;
    emit({ ...metric, type: 'step', steps: config.steps, etaSeconds: done > 0 ? (elapsed / done) * (config.steps - step) : 0 });

    const extraStart = performance.now();
    if (!result.skipped && config.evalEvery > 0 && step % config.evalEvery === 0 && evalBatches.length > 0) {
      lastEval = await evaluate(trainer, evalBatches, step);
      await appendMetric(metricsPath, lastEval);
      emit(lastEval);
      await writeMetricsReport();
    }
    if (!result.skipped && config.saveEvery > 0 && step % config.saveEvery === 0) lastCheckpoint = await save(lastResume);
    excludedMs += performance.now() - extraStart;
    if (hooks.signal?.aborted) {
      interrupted = true;
      break;
    }
  }
  // The prefetched batch (if any) is not needed any more.
  if (pending) (await pending.catch(() => [])).forEach((b) => b.dispose());

  if (!lastCheckpoint.endsWith(`checkpoint-${trainer.globalStep}`)) lastCheckpoint = await save(lastResume);
  if (!interrupted && evalBatches.length > 0 && lastEval?.step !== trainer.globalStep) {
    lastEval = await evaluate(trainer, evalBatches, trainer.globalStep);
    await appendMetric(metricsPath, lastEval);
    emit(lastEval);
  }
  await writeMetricsReport();
  evalBatches.forEach((b) => b.dispose());
  if (corpus.problemCount > 0) {
    emit({ type: 'problems', count: corpus.problemCount, examples: corpus.problems.slice(0, 5).map((p) => `${p.file}:${p.line}: ${p.reason}`) });
  }
  return {
    step: trainer.globalStep,
    interrupted,
    checkpoint: lastCheckpoint,
    lastEval,
    loopOverhead: nativeSeconds > 0 ? Math.max(0, betweenSeconds) / nativeSeconds : 0,
    model,
    tokenizer,
  };
}

/** The settings a run was started with (for --resume). */
export async function readRunConfig(out: string): Promise<PretrainConfig | null> {
  const path = join(out, RUN_CONFIG_FILE);
  if (!existsSync(path)) return null;
  return JSON.parse(await readFile(path, 'utf8')) as PretrainConfig;
}
