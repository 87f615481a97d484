// The supervised stage of the shared run loop (lib/training/run-loop.ts): fine-tuning
// is this stage with one task, multi-task training the same stage with several.
//
//   each micro-batch: a task drawn ∝ weight (TaskSampler) → that task's next shuffled
//   examples (ExampleStream) → optional light input noise → collate → the task's head
//   evaluation: every task's dev set through its head, scored with its own metrics
//
// MLM can be one more task in the mix: its micro-batches come from an MlmPipeline.
// The data position (sampler, noise generator, each stream, the MLM pipeline) is
// saved with every checkpoint, so --resume continues exactly.

import type { AnyMicroBatch } from '../../bindings/native.js';
import { Random } from '../data/masking.js';
import type { MlmBatch, MlmPipeline, PipelinePosition } from '../data/pipeline.js';
import type { EvalFigures, TrainingBatch, TrainingStage } from '../training/run-loop.js';
import type { Trainer } from '../training/trainer.js';
import { collate, disposeBatch, type InputNoiseOptions } from './batch.js';
import { evaluateTask } from './evaluate.js';
import { ExampleStream, type StreamPosition } from './example-stream.js';
import type { Task } from './registry.js';
import { TaskSampler } from './sampler.js';
import type { LoadedExample } from './types.js';

/** One supervised task of the stage. */
export interface StageTask {
  task: Task;
  train: readonly LoadedExample[];
  /** Held-out examples for evaluation (none: the task is not evaluated). */
  dev: readonly LoadedExample[];
  weight: number;
  batchSize: number;
}

/** MLM kept in the mix, as the authors do. */
export interface StageMlm {
  pipeline: MlmPipeline;
  weight: number;
  /** Held-out MLM batches for evaluation. */
  evalBatches: MlmBatch[];
}

export interface SupervisedStageOptions {
  seed: number;
  /** The authors' light noise on supervised inputs (null: none). */
  noise: InputNoiseOptions | null;
  evalBatchSize: number;
  /** Files every checkpoint carries (vocab.txt, tasks.json). */
  files: Record<string, string>;
  /** Data-parallel: this rank's slice of every step's examples (the task sequence is the same on every rank). */
  shard?: { rank: number; worldSize: number };
}

interface DataPosition {
  sampler: number;
  noise: number;
  streams: Record<string, StreamPosition>;
  mlm: PipelinePosition | null;
}

export const MLM_TASK = 'mlm';

export class SupervisedStage implements TrainingStage<AnyMicroBatch> {
  readonly tasks: string[];
  private readonly sampler: TaskSampler;
  private readonly streams = new Map<string, ExampleStream>();
  private readonly noiseRandom: Random;
  private mlmBatches: AsyncGenerator<MlmBatch> | undefined;
  private mlmPosition: PipelinePosition | null = null;

  constructor(
    private readonly trainer: Trainer,
    private readonly items: readonly StageTask[],
    private readonly mlm: StageMlm | null,
    private readonly options: SupervisedStageOptions,
  ) {
    items.forEach((item, i) => this.streams.set(item.task.name, new ExampleStream(item.train.map((e) => e.example), item.batchSize, options.seed + 101 * (i + 1), options.shard)));
    this.tasks = [...items.map((i) => i.task.name), ...(mlm ? [MLM_TASK] : [])];
    this.sampler = new TaskSampler(this.tasks, [...items.map((i) => i.weight), ...(mlm ? [mlm.weight] : [])], options.seed);
    this.noiseRandom = new Random(options.seed ^ 0x5eed);
  }

  /** Micro-batches per epoch of each task, by name. */
  batchesPerEpoch(name: string): number {
    return this.streams.get(name)?.batchesPerEpoch ?? 0;
  }

  resumeAt(dataPosition: unknown): void {
    const position = dataPosition as DataPosition | null;
    if (!position) return;
    this.sampler.state = position.sampler;
    this.noiseRandom.state = position.noise;
    for (const [name, streamPosition] of Object.entries(position.streams)) {
      const stream = this.streams.get(name);
      if (stream) stream.position = { ...streamPosition };
    }
    this.mlmPosition = position.mlm;
  }

  private position(): DataPosition {
    return {
      sampler: this.sampler.state,
      noise: this.noiseRandom.state,
      streams: Object.fromEntries([...this.streams].map(([name, s]) => [name, { ...s.position }])),
      mlm: this.mlmPosition,
    };
  }

  async nextBatch(): Promise<TrainingBatch<AnyMicroBatch>> {
    const name = this.sampler.next();
    if (name === MLM_TASK && this.mlm) {
      this.mlmBatches ??= this.mlm.pipeline.batches(this.mlmPosition ?? undefined);
      const next = await this.mlmBatches.next();
      if (next.done) throw new Error('the MLM corpus ran out of training documents');
      this.mlmPosition = next.value.resume;
      const batch = next.value;
      return { microBatch: batch.microBatch, tokens: batch.tokens, task: MLM_TASK, dataPosition: this.position(), dispose: () => batch.dispose() };
    }
    const item = this.items.find((i) => i.task.name === name)!;
    const examples = this.streams.get(name)!.next();
    const noise = this.options.noise ? { ...this.options.noise, random: this.noiseRandom } : undefined;
    const microBatch = collate(examples, { task: name, numLabels: item.task.labels.length, noise });
    const tokens = examples.reduce((n, e) => n + (e.kind === 'multiple-choice' ? e.choices.reduce((m, c) => m + c.ids.length, 0) : e.ids.length), 0);
    return { microBatch, tokens, task: name, dataPosition: this.position(), dispose: () => disposeBatch(microBatch as unknown as Record<string, unknown>) };
  }

  async evaluate(): Promise<EvalFigures[]> {
    const figures: EvalFigures[] = [];
    for (const item of this.items) {
      if (item.dev.length === 0) continue;
      const result = await evaluateTask(this.trainer, item.task, item.dev, { batchSize: this.options.evalBatchSize });
      figures.push({ task: item.task.name, ...(result.loss !== null ? { loss: result.loss } : {}), ...result.metrics });
    }
    if (this.mlm && this.mlm.evalBatches.length > 0) {
      let lossSum = 0, correct = 0, targets = 0;
      for (const batch of this.mlm.evalBatches) {
        const r = await this.trainer.evaluate(batch.microBatch);
        lossSum += r.lossSum;
        correct += r.correct;
        targets += r.targets;
      }
      figures.push({ task: MLM_TASK, loss: lossSum / Math.max(1, targets), accuracy: correct / Math.max(1, targets) });
    }
    return figures;
  }

  checkpointFiles(): Record<string, string> {
    return this.options.files;
  }

  dispose(): void {
    this.mlm?.evalBatches.forEach((b) => b.dispose());
  }
}
