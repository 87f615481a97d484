// A supervised stage (finetune(), multitask()) run in the terminal: a progress bar
// and data notes from rank 0 only (the launcher's or torchrun's environment picks the
// rank), and Ctrl-C → stop after this step with a checkpoint.

import type { StageHooks } from '../training/stage.js';
import { interruptOnCtrlC } from './interrupt.js';
import { RunProgress } from './progress.js';

/** Resolves with the stage's results and whether this process is the one that reports them. */
export async function runStageInTerminal<R>(stage: (hooks: StageHooks) => Promise<R>, resume: boolean): Promise<{ results: R; writer: boolean }> {
  const { distributedFromEnv } = await import('../training/distributed.js');
  const distributed = distributedFromEnv();
  const writer = (distributed?.rank ?? 0) === 0;
  const interrupt = interruptOnCtrlC();
  const progress = new RunProgress(10);
  try {
    const results = await stage({
      resume,
      signal: interrupt.signal,
      onEvent: writer ? (e) => progress.event(e) : undefined,
      onNote: writer ? (message) => console.log(`note: ${message}`) : undefined,
      distributed,
    });
    return { results, writer };
  } finally {
    progress.stop();
    interrupt.release();
  }
}
