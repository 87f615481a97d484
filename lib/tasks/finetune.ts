// Fine-tuning on one labelled task: the stage behind `roformer finetune`, the
// one-task case of multi-task training (multitask.ts's trainTasks) plus a test set.
//
//   task files → examples (lib/tasks/load.ts) → SupervisedStage with one task
//        → runStage/runTraining (steps, evaluation on dev every epoch, checkpoints, resume)
//        → dev/test metrics, the majority-class baseline → <out>/results.json
//        → <out>/model: the fine-tuned model dir (encoder + head, vocab, tasks.json)
//
// Defaults (config.ts) are the authors' CLUE recipe: Adafactor, lr 5e-4, batch 32,
// 10 epochs, length 128 (or the task's own maximum where its inputs are longer).

import type { StageHooks } from '../training/stage.js';
import { checkFinetuneConfig, FINETUNE_DEFAULTS, type FinetuneConfig } from './config.js';
import { evaluateTask, type Metrics } from './evaluate.js';
import { resolveTask } from './load.js';
import { majorityAccuracy, majorityClass } from './metrics.js';
import { RESULTS_FILE, trainTasks } from './multitask.js';
import type { LoadedExample } from './types.js';

export type { FinetuneConfig } from './config.js';
export { FINETUNE_DEFAULTS } from './config.js';
export type { Metrics } from './evaluate.js';
export { RESULTS_FILE };

/** What `<out>/results.json` holds. */
export interface FinetuneResults {
  task: string;
  dev: Metrics | null;
  test: Metrics | null;
  /** Accuracy of always predicting the training set's most frequent label (classification, multiple choice). */
  majority: { dev: number | null; test: number | null };
  steps: number;
  epochs: number;
  seconds: number;
  examples: { train: number; dev: number; test: number };
  /** The fine-tuned model dir. */
  model: string;
  startedFrom: string | null;
  interrupted: boolean;
}

export type FinetuneHooks = StageHooks;

/** The gold label index of each example, for the majority baseline (classification and multiple choice). */
function goldLabels(examples: readonly LoadedExample[]): number[] | null {
  const labels: number[] = [];
  for (const { example } of examples) {
    if (example.kind !== 'classification' && example.kind !== 'multiple-choice') return null;
    if (example.label >= 0) labels.push(example.label);
  }
  return labels;
}

export async function finetune(config: FinetuneConfig, hooks: FinetuneHooks = {}): Promise<FinetuneResults> {
  config = checkFinetuneConfig({ ...FINETUNE_DEFAULTS, ...config }, hooks.settingName);
  // A JSONL task's labels come from its training file: resolved once, here.
  const task = await resolveTask(config.task, config.train);
  const entry = { name: task.name, task, files: { train: config.train, dev: config.dev, test: config.test }, weight: 1, batchSize: config.batchSize, maxLength: config.maxLength };
  return trainTasks(
    {
      config,
      entries: [entry],
      // The complete task (labels in head order), so that --resume trains exactly this task.
      runConfig: { ...config, task },
      schedule: (stepsPerEpoch) => {
        const epochSteps = config.epochs * stepsPerEpoch;
        const steps = config.maxSteps > 0 ? Math.min(config.maxSteps, epochSteps) : epochSteps;
        return { steps, warmupSteps: Math.floor(config.warmupFraction * steps), evalEvery: config.evalEvery || stepsPerEpoch, saveEvery: config.saveEvery || stepsPerEpoch };
      },
      continueHeads: true,
      reportTitle: () => `RoFormerV2 fine-tuning: ${task.name}`,
      async results({ run, trainer, items, tests, stepsPerEpoch, modelDir }) {
        const { task: trained, train, dev } = items[0]!;
        const test = tests[0]!;
        // The final evaluation: dev and test through the trained head; the majority baseline.
        const devResult = dev.length > 0 ? await evaluateTask(trainer, trained, dev) : null;
        const testResult = test.length > 0 ? await evaluateTask(trainer, trained, test) : null;
        const trainGold = goldLabels(train);
        const majority = trainGold && trainGold.length > 0 ? majorityClass(trainGold) : null;
        const majorityOn = (examples: readonly LoadedExample[]) => {
          const gold = goldLabels(examples);
          return majority !== null && gold && gold.length > 0 ? majorityAccuracy(gold, majority) : null;
        };
        return {
          task: trained.name,
          dev: devResult && Object.keys(devResult.metrics).length > 0 ? devResult.metrics : null,
          test: testResult && Object.keys(testResult.metrics).length > 0 ? testResult.metrics : null,
          majority: { dev: majorityOn(dev), test: majorityOn(test) },
          steps: run.step,
          epochs: run.step / stepsPerEpoch,
          seconds: run.seconds,
          examples: { train: train.length, dev: dev.length, test: test.length },
          model: modelDir,
          startedFrom: config.model ?? null,
          interrupted: run.interrupted,
        };
      },
    },
    hooks,
  );
}
