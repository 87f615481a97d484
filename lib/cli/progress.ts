// The terminal view of a training run, from the run loop's events: a progress
// bar (step, loss, tokens/s, memory, ETA) on a terminal, plain log lines
// otherwise (CI, files). Every training command (pretrain, and the supervised
// stages) renders its run with this.

import cliProgress from 'cli-progress';

import type { EvalMetric } from '../training/metrics.js';
import type { RunEvent } from '../training/run-loop.js';

/** The events rendered: the loop's, where the start event may name a vocab size. */
export type ProgressEvent = RunEvent | (Extract<RunEvent, { type: 'start' }> & { vocabSize?: number });

export const formatSeconds = (s: number) =>
  s >= 3600 ? `${(s / 3600).toFixed(1)}h` : s >= 60 ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s` : `${Math.round(s)}s`;

/** Fractions shown as percentages. */
const RATIOS = new Set(['accuracy', 'f1', 'em', 'precision', 'recall']);
/** Counts: shown last, in parentheses. */
const COUNTS = new Set(['targets', 'examples', 'samples']);

/** "loss 3.1234  perplexity 22.1  accuracy 45.12%  (812 targets)" */
export function formatFigures(record: EvalMetric): string {
  const parts: string[] = [];
  const counts: string[] = [];
  for (const [name, value] of Object.entries(record)) {
    if (name === 'type' || name === 'step' || name === 'task' || typeof value !== 'number') continue;
    if (COUNTS.has(name)) counts.push(`${value} ${name}`);
    else if (RATIOS.has(name)) parts.push(`${name} ${(100 * value).toFixed(2)}%`);
    else if (name === 'perplexity') parts.push(`${name} ${value.toFixed(1)}`);
    else parts.push(`${name} ${+value.toFixed(4)}`);
  }
  return parts.join('  ') + (counts.length > 0 ? `  (${counts.join(', ')})` : '');
}

export class RunProgress {
  private bar: cliProgress.SingleBar | null = null;
  private readonly interactive = Boolean(process.stderr.isTTY);

  /** `logEvery`: without a terminal, a log line every n steps. */
  constructor(private readonly logEvery = 10) {}

  private log(line: string): void {
    if (this.bar) this.bar.stop();
    console.log(line);
    if (this.bar) this.bar.start(this.bar.getTotal(), (this.bar as unknown as { value: number }).value);
  }

  event(e: ProgressEvent): void {
    switch (e.type) {
      case 'start': {
        const about = [
          `${(e.parameters / 1e6).toFixed(1)}M parameters`,
          ...('vocabSize' in e && e.vocabSize !== undefined ? [`vocab ${e.vocabSize}`] : []),
          ...(e.tasks.length > 0 ? [`tasks ${e.tasks.join(', ')}`] : []),
          `steps ${e.step} → ${e.steps}`,
        ];
        this.log(`${e.resumedFrom ? `resuming from ${e.resumedFrom}` : 'new run'}: ${about.join(', ')}`);
        if (this.interactive) {
          this.bar = new cliProgress.SingleBar(
            { format: 'step {value}/{total} |{bar}| loss {loss} | {tps} tok/s | {rss} MB | ETA {eta_h}', hideCursor: true, stream: process.stderr },
            cliProgress.Presets.shades_classic,
          );
          this.bar.start(e.steps, e.step, { loss: '-', tps: '-', rss: '-', eta_h: '-' });
        }
        break;
      }
      case 'step':
        if (this.bar) {
          this.bar.update(e.step, { loss: e.loss.toFixed(3), tps: Math.round(e.tokensPerSecond), rss: Math.round(e.rssMB), eta_h: formatSeconds(e.etaSeconds) });
        } else if (e.step % this.logEvery === 0 || e.step === e.steps) {
          console.log(
            `step ${e.step}/${e.steps}${e.task ? `  ${e.task}` : ''}  loss ${e.loss.toFixed(4)}  lr ${e.lr.toExponential(2)}  ` +
              `${Math.round(e.tokensPerSecond)} tok/s  ${Math.round(e.rssMB)} MB  ETA ${formatSeconds(e.etaSeconds)}` +
              (e.skipped ? '  (skipped: inf/NaN)' : ''),
          );
        }
        break;
      case 'eval':
        this.log(`eval @ step ${e.step}${e.task ? ` [${e.task}]` : ''}: ${formatFigures(e)}`);
        break;
      case 'checkpoint':
        this.log(`checkpoint ${e.dir}`);
        break;
      case 'problems':
        this.log(`${e.count} bad input line(s) skipped, e.g.\n  ${e.examples.join('\n  ')}`);
        break;
      case 'end':
        this.stop();
        console.log(`${e.interrupted ? 'stopped' : 'finished'} at step ${e.step}; checkpoint ${e.checkpoint}`);
        console.log(`time in JS between native steps: ${(100 * e.loopOverhead).toFixed(2)}% of the native step time`);
        break;
    }
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
