// The shared run loop on its own, with a fake trainer and a fake stage (no
// libtorch): evaluation and checkpoint cadence, Ctrl-C → checkpoint, exact
// resume of the step count and the data position, saving on a data error,
// the end of the data, per-task records, resident memory, and the report.

import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it, vi } from 'vitest';

import { formatFigures, RunProgress } from '../lib/cli/progress.js';
import { readMetrics, type EvalMetric, type Metric, type TrainMetric } from '../lib/training/metrics.js';
import { reportSvg } from '../lib/training/report.js';
import { openRunDir } from '../lib/training/run-dir.js';
import { runTraining, type EvalFigures, type RunEvent, type StepTrainer, type TrainingBatch, type TrainingStage } from '../lib/training/run-loop.js';

const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-loop-${name}-`));

/** A micro-batch of the fake stage: the index of the example it holds. */
interface FakeMicroBatch {
  index: number;
  task?: string;
}

/**
 * A trainer whose "weights" are the sum of the indices it has seen: the loss of
 * a step is a function of the state and the data, so a resume that gets either
 * wrong gives different losses.
 */
class FakeTrainer implements StepTrainer<FakeMicroBatch> {
  globalStep = 0;
  state = 0;
  readonly model = { parameterCount: 1234 };
  saves: Array<{ step: number; dataPosition: unknown; files?: Record<string, string | Buffer> }> = [];
  constructor(private readonly behaviour: { failAtStep?: number; mixedTaskLosses?: boolean } = {}) {}

  async step(batches: FakeMicroBatch[]) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    if (this.globalStep + 1 === this.behaviour.failAtStep) throw new Error('native step failed');
    for (const b of batches) this.state += b.index;
    this.globalStep++;
    const loss = 10 / (1 + this.state);
    const taskLosses = this.behaviour.mixedTaskLosses ? Object.fromEntries(batches.map((b) => [b.task!, loss + b.index / 100])) : undefined;
    return { step: this.globalStep, loss, lr: 1e-3, alpha: 1, gradNorm: 1, skipped: false, ...(taskLosses ? { taskLosses } : {}) };
  }

  async save(runDir: string, extra: { dataPosition?: unknown; files?: Record<string, string | Buffer>; keepLast?: number }) {
    const dir = join(runDir, `checkpoint-${this.globalStep}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'trainer_state.json'), JSON.stringify({ step: this.globalStep, state: this.state, dataPosition: extra.dataPosition }));
    for (const [name, data] of Object.entries(extra.files ?? {})) await writeFile(join(dir, name), data);
    await writeFile(join(runDir, 'latest'), `checkpoint-${this.globalStep}\n`);
    this.saves.push({ step: this.globalStep, dataPosition: extra.dataPosition, files: extra.files });
    return dir;
  }

  async load(path: string) {
    const saved = JSON.parse(await readFile(join(path, 'trainer_state.json'), 'utf8'));
    [this.globalStep, this.state] = [saved.step, saved.state];
    return { dir: path, step: saved.step, dataPosition: saved.dataPosition };
  }
}

/** Examples 0, 1, 2, …; the data position is the index of the next one. */
class FakeStage implements TrainingStage<FakeMicroBatch> {
  next = 0;
  resumedAt: unknown = undefined;
  made = 0;
  disposed = 0;
  evaluatedAt: number[] = [];
  constructor(
    private readonly trainer: FakeTrainer,
    private readonly options: { tasks?: string[]; length?: number; failAtIndex?: number } = {},
  ) {}

  get tasks() {
    return this.options.tasks;
  }

  resumeAt(position: unknown) {
    this.resumedAt = position;
    this.next = position as number;
  }

  async nextBatch(): Promise<TrainingBatch<FakeMicroBatch> | null> {
    const index = this.next;
    if (index === this.options.failAtIndex) throw new Error(`bad record at data.jsonl:${index + 1}`);
    if (this.options.length !== undefined && index >= this.options.length) return null;
    this.next++;
    this.made++;
    const tasks = this.options.tasks;
    const task = tasks ? tasks[index % tasks.length] : undefined;
    return { microBatch: { index, task }, tokens: 100, task, dataPosition: index + 1, dispose: () => this.disposed++ };
  }

  async evaluate(): Promise<EvalFigures[]> {
    this.evaluatedAt.push(this.trainer.globalStep);
    const accuracy = 1 - 1 / (2 + this.trainer.globalStep);
    if (!this.options.tasks) return [{ loss: 1 / (1 + this.trainer.globalStep), accuracy, examples: 50 }];
    return this.options.tasks.map((task, i) => ({ task, loss: (i + 1) / (1 + this.trainer.globalStep), accuracy: accuracy / (i + 1), f1: accuracy / (i + 2) }));
  }

  checkpointFiles() {
    return { 'vocab.txt': 'a\nb\n' };
  }
}

const trainRecords = (metrics: Metric[]) => metrics.filter((m): m is TrainMetric => m.type === 'train');
const evalRecords = (metrics: Metric[]) => metrics.filter((m): m is EvalMetric => m.type === 'eval');

describe('runTraining', () => {
  it('evaluates at 0, every evalEvery steps and at the end; checkpoints every saveEvery steps and at the end', async () => {
    const out = tmp('cadence');
    const trainer = new FakeTrainer();
    const stage = new FakeStage(trainer);
    const events: RunEvent[] = [];
    const result = await runTraining(trainer, stage, { out, steps: 10, evalEvery: 4, saveEvery: 3, onEvent: (e) => events.push(e) });

    expect(result).toMatchObject({ step: 10, interrupted: false, checkpoint: join(out, 'checkpoint-10') });
    expect(stage.evaluatedAt).toEqual([0, 4, 8, 10]);
    expect(trainer.saves.map((s) => s.step)).toEqual([3, 6, 9, 10]);
    expect(trainer.saves.map((s) => s.dataPosition)).toEqual([3, 6, 9, 10]); // the trained batches', not the prefetched one's
    expect(trainer.saves[0]!.files).toEqual({ 'vocab.txt': 'a\nb\n' });
    expect(stage.disposed).toBe(stage.made); // the prefetched batch too

    const metrics = await readMetrics(join(out, 'metrics.jsonl'));
    expect(trainRecords(metrics).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(evalRecords(metrics).map((m) => m.step)).toEqual([0, 4, 8, 10]);
    expect(evalRecords(metrics)[0]).toEqual({ type: 'eval', step: 0, loss: 1, accuracy: 0.5, examples: 50 });
    expect(result.lastEval).toEqual([evalRecords(metrics)[3]]);

    const types = events.map((e) => e.type);
    expect(types[0]).toBe('start');
    expect(types.at(-1)).toBe('end');
    expect(types.filter((t) => t === 'step')).toHaveLength(10);
    expect(types.filter((t) => t === 'checkpoint')).toHaveLength(4);
    expect(events[0]).toMatchObject({ type: 'start', step: 0, steps: 10, parameters: 1234, resumedFrom: null, tasks: [] });
    const last = events.filter((e) => e.type === 'step').at(-1)!;
    expect(last).toMatchObject({ step: 10, steps: 10, etaSeconds: 0, tokensPerSecond: expect.any(Number) });
    expect(existsSync(join(out, 'report.svg'))).toBe(true);
  });

  it('each train record carries the resident memory (rssMB), and the report draws it', async () => {
    const out = tmp('rss');
    const trainer = new FakeTrainer();
    await runTraining(trainer, new FakeStage(trainer), { out, steps: 5, evalEvery: 0, saveEvery: 0 });
    const train = trainRecords(await readMetrics(join(out, 'metrics.jsonl')));
    const rss = process.memoryUsage.rss() / 2 ** 20;
    for (const m of train) {
      expect(m.rssMB).toBeGreaterThan(10);
      expect(m.rssMB).toBeLessThan(rss * 2);
    }
    const svg = readFileSync(join(out, 'report.svg'), 'utf8');
    expect(svg).toContain('resident memory (MB)');
  });

  it('an abort stops after the current step with a checkpoint there, and no last evaluation', async () => {
    const out = tmp('abort');
    const trainer = new FakeTrainer();
    const stage = new FakeStage(trainer);
    const abort = new AbortController();
    const result = await runTraining(trainer, stage, {
      out,
      steps: 20,
      evalEvery: 4,
      saveEvery: 0,
      signal: abort.signal,
      onEvent: (e) => e.type === 'step' && e.step === 5 && abort.abort(),
    });
    expect(result).toMatchObject({ step: 5, interrupted: true, checkpoint: join(out, 'checkpoint-5') });
    expect(trainer.saves).toEqual([{ step: 5, dataPosition: 5, files: { 'vocab.txt': 'a\nb\n' } }]);
    expect(stage.evaluatedAt).toEqual([0, 4]);
    expect(stage.disposed).toBe(stage.made);
  });

  it('resume continues the step count, the trainer state and the data position, and drops the records after the checkpoint', async () => {
    // The run as it should be: 12 steps straight.
    const straightOut = tmp('straight');
    const straight = new FakeTrainer();
    await runTraining(straight, new FakeStage(straight), { out: straightOut, steps: 12, evalEvery: 0, saveEvery: 0 });
    const expected = trainRecords(await readMetrics(join(straightOut, 'metrics.jsonl'))).map((m) => m.loss);

    // The native step fails at step 8: the checkpoint of step 6 is the latest; step 7's record is in metrics.jsonl.
    const out = tmp('resume');
    const first = new FakeTrainer({ failAtStep: 8 });
    await expect(runTraining(first, new FakeStage(first), { out, steps: 12, evalEvery: 0, saveEvery: 3 })).rejects.toThrow(/^native step failed$/);
    expect(first.saves.map((s) => s.step)).toEqual([3, 6]); // nothing saved after a failed native step
    expect(trainRecords(await readMetrics(join(out, 'metrics.jsonl'))).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);

    await expect(openRunDir(out, false)).rejects.toThrow(/already holds a run: pass --resume/);
    const resumeFrom = await openRunDir(out, true);
    expect(resumeFrom).toBe(join(out, 'checkpoint-6'));
    const second = new FakeTrainer();
    const stage = new FakeStage(second);
    const events: RunEvent[] = [];
    const result = await runTraining(second, stage, { out, steps: 12, evalEvery: 0, saveEvery: 3, resumeFrom, onEvent: (e) => events.push(e) });
    expect(stage.resumedAt).toBe(6);
    expect(events[0]).toMatchObject({ type: 'start', step: 6, resumedFrom: resumeFrom });
    expect(result.step).toBe(12);
    const train = trainRecords(await readMetrics(join(out, 'metrics.jsonl')));
    expect(train.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(train.map((m) => m.loss)).toEqual(expected);
  });

  it('a failing data source or evaluation still saves the steps done, and says so', async () => {
    const out = tmp('data-error');
    const trainer = new FakeTrainer();
    const stage = new FakeStage(trainer, { failAtIndex: 4 });
    // Batch 4 is prefetched during step 4; the error surfaces when step 5 needs it.
    await expect(runTraining(trainer, stage, { out, steps: 10, evalEvery: 0, saveEvery: 0 })).rejects.toThrow(
      /bad record at data\.jsonl:5\n\(steps up to 4 were saved in .*checkpoint-4: --resume continues from there\)/,
    );
    expect(trainer.saves).toEqual([{ step: 4, dataPosition: 4, files: { 'vocab.txt': 'a\nb\n' } }]);
    expect(stage.disposed).toBe(stage.made);
    await expect(openRunDir(tmp('empty'), true)).rejects.toThrow(/is not a run with a checkpoint/);
  });

  it('a failing evaluation saves the steps done; one before any step leaves no checkpoint behind', async () => {
    const out = tmp('eval-error');
    const trainer = new FakeTrainer();
    const stage = new FakeStage(trainer);
    stage.evaluate = async () => {
      throw new Error(`evaluation failed at step ${trainer.globalStep}`);
    };
    await expect(runTraining(trainer, stage, { out, steps: 10, evalEvery: 4, saveEvery: 0 })).rejects.toThrow(/^evaluation failed at step 0$/);
    expect(trainer.saves).toEqual([]);
    await expect(openRunDir(out, false)).resolves.toBeNull(); // still a new run

    const later = new FakeTrainer();
    const laterStage = new FakeStage(later);
    const evaluate = laterStage.evaluate.bind(laterStage);
    laterStage.evaluate = async () => {
      if (later.globalStep === 4) throw new Error('evaluation failed at step 4');
      return evaluate();
    };
    await expect(runTraining(later, laterStage, { out, steps: 10, evalEvery: 4, saveEvery: 0 })).rejects.toThrow(/evaluation failed at step 4\n\(steps up to 4 were saved/);
    expect(later.saves.map((s) => s.step)).toEqual([4]);
  });

  it('ends when the data ends: a last, shorter accumulation step, a checkpoint and a last evaluation', async () => {
    const out = tmp('data-end');
    const trainer = new FakeTrainer();
    const stage = new FakeStage(trainer, { length: 7 });
    const seen: number[][] = [];
    const step = trainer.step.bind(trainer);
    trainer.step = (batches) => (seen.push(batches.map((b) => b.index)), step(batches));
    const result = await runTraining(trainer, stage, { out, steps: 100, accumulate: 2, evalEvery: 10, saveEvery: 0 });
    expect(seen).toEqual([[0, 1], [2, 3], [4, 5], [6]]);
    expect(result).toMatchObject({ step: 4, interrupted: false, checkpoint: join(out, 'checkpoint-4') });
    expect(stage.evaluatedAt).toEqual([0, 4]);
    const train = trainRecords(await readMetrics(join(out, 'metrics.jsonl')));
    expect(train[0]!.tokensPerSecond).toBeGreaterThan(0);
  });

  it('multi-task: train records name the step task (or carry each task loss), eval records come one per task', async () => {
    const out = tmp('tasks');
    const trainer = new FakeTrainer();
    const stage = new FakeStage(trainer, { tasks: ['tnews', 'afqmc', 'cmrc2018'] });
    const events: RunEvent[] = [];
    await runTraining(trainer, stage, { out, steps: 9, evalEvery: 3, saveEvery: 0, onEvent: (e) => events.push(e) });
    expect(events[0]).toMatchObject({ type: 'start', tasks: ['tnews', 'afqmc', 'cmrc2018'] });
    const metrics = await readMetrics(join(out, 'metrics.jsonl'));
    expect(trainRecords(metrics).map((m) => m.task)).toEqual(['tnews', 'afqmc', 'cmrc2018', 'tnews', 'afqmc', 'cmrc2018', 'tnews', 'afqmc', 'cmrc2018']);
    const evals = evalRecords(metrics);
    expect(evals.map((m) => `${m.step}:${m.task}`)).toEqual(
      [0, 3, 6, 9].flatMap((s) => ['tnews', 'afqmc', 'cmrc2018'].map((t) => `${s}:${t}`)),
    );
    expect(evals[1]).toMatchObject({ type: 'eval', step: 0, task: 'afqmc', loss: 2, accuracy: 0.25 });

    // Steps mixing tasks: no single task, each task's loss as the trainer reports it.
    const mixedOut = tmp('mixed');
    const mixed = new FakeTrainer({ mixedTaskLosses: true });
    await runTraining(mixed, new FakeStage(mixed, { tasks: ['tnews', 'afqmc'] }), { out: mixedOut, steps: 3, accumulate: 2, evalEvery: 0, saveEvery: 0 });
    const train = trainRecords(await readMetrics(join(mixedOut, 'metrics.jsonl')));
    expect(train[0]!.task).toBeUndefined();
    expect(Object.keys(train[0]!.taskLosses!)).toEqual(['tnews', 'afqmc']);
  });
});

describe('report', () => {
  const run = (tasks: string[] | undefined, steps = 60): Metric[] => {
    const metrics: Metric[] = [];
    for (let step = 1; step <= steps; step++) {
      const task = tasks?.[step % tasks.length];
      const k = tasks ? tasks.indexOf(task!) + 1 : 1;
      const loss = k * (2 + Math.exp(-step / 15)) + 0.3 * Math.sin(step * 1.7);
      metrics.push({ type: 'train', step, ...(task ? { task } : {}), loss, lr: 1e-3, alpha: 1, gradNorm: 1, tokensPerSecond: 1000, skipped: false, elapsedSeconds: step, rssMB: 800 + 40 * Math.log(step) });
      if (step % 10 === 0) {
        for (const [i, t] of (tasks ?? [undefined]).entries()) {
          const acc = (0.9 - 0.2 * i) * (1 - Math.exp(-step / 20));
          metrics.push({ type: 'eval', step, ...(t ? { task: t } : {}), loss: (i + 1) * (2 + Math.exp(-step / 15)), accuracy: acc, ...(t === 'cmrc2018' ? { f1: acc, em: acc * 0.8 } : {}) });
        }
      }
    }
    return metrics;
  };

  it('one task: train, smoothed train and held-out loss, accuracy, memory', () => {
    const svg = reportSvg(run(undefined));
    expect(svg.match(/<polyline/g)).toHaveLength(3 + 1 + 1);
    for (const text of ['train loss (EMA)', 'held-out loss', 'held-out accuracy', 'resident memory (MB)']) expect(svg).toContain(text);
    expect(svg).not.toContain('held-out examples');
  });

  it('several tasks: a curve per task for the loss and for each eval figure, a legend naming the tasks', () => {
    const tasks = ['tnews', 'afqmc', 'cmrc2018'];
    const svg = reportSvg(run(tasks), 'multi-task');
    // loss: raw, smoothed and held-out per task; accuracy per task; f1 and em for the one task that has them; memory
    expect(svg.match(/<polyline/g)).toHaveLength(3 * 3 + 3 + 1 + 1 + 1);
    for (const text of ['multi-task: loss', 'held-out accuracy', 'held-out f1', 'held-out em', ...tasks.map((t) => `>${t}<`)]) expect(svg).toContain(text);
    // each task's curves share its colour
    const colours = new Set([...svg.matchAll(/<polyline fill="none" stroke="(#[0-9a-f]+)"/g)].map((m) => m[1]));
    expect(colours.size).toBe(4); // three tasks + memory
  });
});

describe('progress rendering', () => {
  it('log lines name the task and the figures', () => {
    expect(formatFigures({ type: 'eval', step: 4, task: 'tnews', loss: 1.23456, accuracy: 0.5123, examples: 200 })).toBe('loss 1.2346  accuracy 51.23%  (200 examples)');
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(line));
    try {
      const progress = new RunProgress(1);
      progress.event({ type: 'start', step: 0, steps: 2, parameters: 2.5e6, resumedFrom: null, tasks: ['tnews', 'afqmc'] });
      progress.event({ type: 'step', step: 1, steps: 2, etaSeconds: 65, task: 'tnews', loss: 2.5, lr: 1e-3, alpha: 1, gradNorm: 1, tokensPerSecond: 1234.4, skipped: false, elapsedSeconds: 1, rssMB: 812.3 });
      progress.event({ type: 'eval', step: 1, task: 'afqmc', loss: 0.7, accuracy: 0.6 });
      progress.event({ type: 'end', step: 2, interrupted: true, checkpoint: 'runs/x/checkpoint-2', loopOverhead: 0.0123, seconds: 3 });
    } finally {
      log.mockRestore();
    }
    expect(lines).toEqual([
      'new run: 2.5M parameters, tasks tnews, afqmc, steps 0 → 2',
      'step 1/2  tnews  loss 2.5000  lr 1.00e-3  1234 tok/s  812 MB  ETA 1m5s',
      'eval @ step 1 [afqmc]: loss 0.7  accuracy 60.00%',
      'stopped at step 2; checkpoint runs/x/checkpoint-2',
      'time in JS between native steps: 1.23% of the native step time',
    ]);
  });
});
