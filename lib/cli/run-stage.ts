// Every training command (pretrain, finetune, multitask) runs its stage through here:
// a progress bar and data notes from rank 0 only (the launcher's or torchrun's
// environment picks the rank), notes on stderr (stdout stays the results), Ctrl-C →
// stop after this step with a checkpoint, exit status 130 when interrupted; and
// --resume, which continues a run with its own settings.

import type { StageHooks } from '../training/stage.js';
import { flagOf } from '../util/value-kinds.js';
import { interruptOnCtrlC } from './interrupt.js';
import { RunProgress, type ProgressEvent } from './progress.js';

/**
 * Runs the stage; resolves with its results and whether this process is the one that
 * reports them. An interrupted run (its checkpoint and results written) sets exit status 130.
 */
export async function runStageInTerminal<R extends { interrupted: boolean }>(
  stage: (hooks: StageHooks<ProgressEvent>) => Promise<R>,
  options: { resume: boolean; logEvery?: number; modelConfig?: string },
): Promise<{ results: R; writer: boolean }> {
  const { distributedFromEnv } = await import('../training/distributed.js');
  const distributed = distributedFromEnv();
  const writer = (distributed?.rank ?? 0) === 0;
  const interrupt = interruptOnCtrlC();
  const progress = new RunProgress(options.logEvery ?? 10);
  try {
    const results = await stage({
      resume: options.resume,
      signal: interrupt.signal,
      onEvent: writer ? (e) => progress.event(e) : undefined,
      onNote: writer ? (message) => console.error(`note: ${message}`) : undefined,
      distributed,
      // Errors name the flag; --model-config also the file (or inline JSON) it was given.
      settingName: (key) => (key === 'modelConfig' && options.modelConfig ? `--model-config ${options.modelConfig}` : flagOf(key)),
    });
    if (results.interrupted) process.exitCode = 130; // after the checkpoint and results, as Ctrl-C asked
    return { results, writer };
  } finally {
    progress.stop();
    interrupt.release();
  }
}

/**
 * A resumed run's config: its own settings (run_config.json), of which only `extend`
 * (the flags given among a longer --steps, --epochs, --max-steps) may change.
 */
export async function resumedConfig<C extends { out: string }>(command: string, out: string | undefined, extend: Partial<C>): Promise<C> {
  if (!out) throw new Error('--resume needs --out: the run directory to continue');
  const { readRunConfig } = await import('../training/run-dir.js');
  const saved = await readRunConfig<C>(out);
  if (!saved) throw new Error(`--resume: ${out} is not a ${command} run (no run_config.json)`);
  const given = Object.fromEntries(Object.entries(extend).filter(([, v]) => v !== undefined));
  return { ...saved, out, ...given };
}
