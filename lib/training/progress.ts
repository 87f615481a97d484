// The terminal view of a pre-training run: a progress bar (step, loss, tokens/s,
// ETA) on a terminal, plain log lines otherwise (CI, files).

import cliProgress from 'cli-progress';

import type { PretrainEvent } from '../pretrain/pretrain.js';

const formatSeconds = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(1)}h` : s >= 60 ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s` : `${Math.round(s)}s`);

export class PretrainProgress {
  private bar: cliProgress.SingleBar | null = null;
  private readonly interactive = Boolean(process.stderr.isTTY);

  constructor(private readonly logEvery = 10) {}

  private log(line: string): void {
    if (this.bar) this.bar.stop();
    console.log(line);
    if (this.bar) this.bar.start(this.bar.getTotal(), (this.bar as unknown as { value: number }).value);
  }

  event(e: PretrainEvent): void {
    switch (e.type) {
      case 'start':
        this.log(
          `${e.resumedFrom ? `resuming from ${e.resumedFrom}` : 'new run'}: ${(e.parameters / 1e6).toFixed(1)}M parameters, ` +
            `vocab ${e.vocabSize}, steps ${e.step} → ${e.steps}`,
        );
        if (this.interactive) {
          this.bar = new cliProgress.SingleBar(
            { format: 'step {value}/{total} |{bar}| loss {loss} | {tps} tok/s | ETA {eta_h}', hideCursor: true, stream: process.stderr },
            cliProgress.Presets.shades_classic,
          );
          this.bar.start(e.steps, e.step, { loss: '-', tps: '-', eta_h: '-' });
        }
        break;
      case 'step':
        if (this.bar) {
          this.bar.update(e.step, { loss: e.loss.toFixed(3), tps: Math.round(e.tokensPerSecond), eta_h: formatSeconds(e.etaSeconds) });
        } else if (e.step % this.logEvery === 0 || e.step === e.steps) {
          console.log(
            `step ${e.step}/${e.steps}  loss ${e.loss.toFixed(4)}  lr ${e.lr.toExponential(2)}  ${Math.round(e.tokensPerSecond)} tok/s  ETA ${formatSeconds(e.etaSeconds)}` +
              (e.skipped ? '  (skipped: inf/NaN)' : ''),
          );
        }
        break;
      case 'eval':
        this.log(`eval @ step ${e.step}: held-out loss ${e.loss.toFixed(4)}, perplexity ${e.perplexity.toFixed(1)}, masked-token accuracy ${(100 * e.accuracy).toFixed(2)}%`);
        break;
      case 'checkpoint':
        this.log(`checkpoint ${e.dir}`);
        break;
      case 'problems':
        this.log(`${e.count} bad corpus line(s) skipped, e.g.\n  ${e.examples.join('\n  ')}`);
        break;
    }
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
