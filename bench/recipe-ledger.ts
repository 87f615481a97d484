// The recipe benchmark's ledger: which units of work are done, kept in
// <out>/state.json, so that a killed run continues where it stopped.
//
// A unit is one (arm, stage, task, seed): it runs in its own run directory and is
// done once. When the ledger says it finished, its recorded result is reused. When it
// started but did not finish, its run directory resumes from its latest checkpoint
// (the stages' own --resume), or, with no checkpoint yet, is cleared and started again.
// The ledger is rewritten atomically after every change, so a kill leaves either the
// old or the new one.

import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

import { LATEST_FILE } from '../lib/training/checkpoint.js';
import { writeFileAtomic } from '../lib/util/atomic-file.js';

export const STATE_FILE = 'state.json';

export interface UnitKey {
  arm: string;
  stage: 'pretrain' | 'multitask' | 'finetune';
  /** The task fine-tuned ('-' for the stages over many). */
  task: string;
  seed: number;
}

export interface UnitRecord<R> extends UnitKey {
  /** The run directory. */
  dir: string;
  /** Times this unit was started (1 for a run never interrupted). */
  attempts: number;
  /** Whether the latest attempt continued from a checkpoint. */
  resumed: boolean;
  started: string;
  finished: string | null;
  /** Wall time of the attempt that finished it. */
  seconds: number | null;
  result: R | null;
}

interface State<S, R> {
  settings: S;
  units: Record<string, UnitRecord<R>>;
}

export const unitName = (u: UnitKey): string => `${u.arm}/${u.stage}/${u.task}/seed-${u.seed}`;

export class Ledger<S extends object, R> {
  readonly #file: string;
  readonly #out: string;
  readonly #state: State<S, R>;

  private constructor(out: string, state: State<S, R>) {
    this.#out = out;
    this.#file = join(out, STATE_FILE);
    this.#state = state;
  }

  /**
   * The ledger in `out`: a new one, or the one there when it was written with the same
   * settings. `selection` names the settings that only choose which units run (how many
   * seeds, on which tasks): a finished unit's figure does not depend on them, so they may
   * change between invocations, and the ledger keeps the latest.
   */
  static open<S extends object, R>(out: string, settings: S, selection: ReadonlyArray<keyof S> = []): Ledger<S, R> {
    const file = join(out, STATE_FILE);
    if (!existsSync(file)) return new Ledger(out, { settings, units: {} });
    let state: State<S, R>;
    try {
      state = JSON.parse(readFileSync(file, 'utf8')) as State<S, R>;
    } catch (error) {
      throw new Error(`${file}: not a readable ledger (${(error as Error).message}): remove it to start again`);
    }
    const differs = Object.keys({ ...settings, ...state.settings }).filter(
      (k) => !selection.includes(k as keyof S) && JSON.stringify((settings as Record<string, unknown>)[k]) !== JSON.stringify((state.settings as Record<string, unknown>)[k]),
    );
    if (differs.length > 0) {
      const k = differs[0]!;
      throw new Error(
        `${file} holds a run with other settings (${k}: ${JSON.stringify((state.settings as Record<string, unknown>)[k])} there, ` +
          `${JSON.stringify((settings as Record<string, unknown>)[k])} now): resume it with the same settings or choose another --out`,
      );
    }
    return new Ledger(out, { ...state, settings });
  }

  get units(): Array<UnitRecord<R>> {
    return Object.values(this.#state.units);
  }

  done(key: UnitKey): R | null {
    const unit = this.#state.units[unitName(key)];
    return unit?.finished ? unit.result : null;
  }

  /** The unit's result: recorded, or from `work(dir, resume)` run now (and then recorded). */
  async run(key: UnitKey, work: (dir: string, resume: boolean) => Promise<R & { interrupted: boolean }>): Promise<R> {
    const name = unitName(key);
    const previous = this.#state.units[name];
    if (previous?.finished) return previous.result!;
    const dir = join(this.#out, 'runs', name);
    const resume = existsSync(join(dir, LATEST_FILE));
    if (!resume) await rm(dir, { recursive: true, force: true }); // a start without a checkpoint: begin again
    const unit: UnitRecord<R> = { ...key, dir, attempts: (previous?.attempts ?? 0) + 1, resumed: resume, started: new Date().toISOString(), finished: null, seconds: null, result: null };
    this.#state.units[name] = unit;
    await this.#save();
    const started = Date.now();
    const result = await work(dir, resume);
    if (result.interrupted) throw new Error(`${name} was interrupted (its checkpoint is in ${dir}; running again resumes it)`);
    Object.assign(unit, { finished: new Date().toISOString(), seconds: (Date.now() - started) / 1000, result });
    await this.#save();
    return result;
  }

  async #save(): Promise<void> {
    await writeFileAtomic(this.#file, [JSON.stringify(this.#state, null, 2) + '\n']);
  }
}
