// A run directory: everything one training run writes, in one place.
//
//   <out>/
//     run_config.json      the settings the run (or its latest attempt) runs with
//     metrics.jsonl        one record per step and per evaluation (metrics.ts)
//     report.svg           the curves (report.ts)
//     latest, checkpoint-N/   (checkpoint.ts)
//
// A directory holds one run: starting a new run over an old one is refused, and
// `resume` continues the old one from its latest checkpoint.

import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { LATEST_FILE, resolveCheckpointDir } from './checkpoint.js';

export const RUN_CONFIG_FILE = 'run_config.json';
export const METRICS_FILE = 'metrics.jsonl';
export const REPORT_FILE = 'report.svg';

/**
 * Where a run in `out` starts: null for a new run, or the checkpoint to continue
 * from when `resume` is set. Both mistakes (resuming nothing, overwriting a run)
 * are errors that say what to do instead.
 */
export async function openRunDir(out: string, resume: boolean): Promise<string | null> {
  const hasRun = existsSync(join(out, LATEST_FILE));
  if (resume) {
    if (!hasRun) throw new Error(`--resume: ${out} is not a run with a checkpoint (no ${join(out, LATEST_FILE)})`);
    return resolveCheckpointDir(out);
  }
  if (hasRun) throw new Error(`${out} already holds a run: pass --resume to continue it, or choose another --out`);
  return null;
}

/** Records the settings this attempt runs with (a resumed run may extend its steps). */
export async function writeRunConfig(out: string, config: unknown): Promise<void> {
  await writeFile(join(out, RUN_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
}

/** The settings a run was started with (for --resume); null when the directory has none. */
export async function readRunConfig<T>(out: string): Promise<T | null> {
  const path = join(out, RUN_CONFIG_FILE);
  if (!existsSync(path)) return null;
  return JSON.parse(await readFile(path, 'utf8')) as T;
}
