// Which task each micro-batch of multi-task training comes from: drawn with
// probability proportional to the task's weight, from a seeded generator whose
// state is saved with every checkpoint so a resumed run draws the same sequence.

import { Random } from '../data/masking.js';

export class TaskSampler {
  private readonly cumulative: number[];
  private readonly random: Random;

  constructor(
    readonly names: readonly string[],
    weights: readonly number[],
    seed: number,
  ) {
    if (names.length === 0) throw new RangeError('the task sampler needs at least one task');
    if (weights.length !== names.length) throw new RangeError(`${names.length} tasks but ${weights.length} weights`);
    let total = 0;
    this.cumulative = weights.map((w, i) => {
      if (!(Number.isFinite(w) && w > 0)) throw new RangeError(`task ${names[i]}: weight must be a positive number, got ${w}`);
      return (total += w);
    });
    this.cumulative = this.cumulative.map((c) => c / total);
    this.random = new Random(seed);
  }

  /** The probability of each task, in `names` order. */
  get probabilities(): number[] {
    return this.cumulative.map((c, i) => c - (i === 0 ? 0 : this.cumulative[i - 1]!));
  }

  /** The next task's name. */
  next(): string {
    const u = this.random.next();
    const i = this.cumulative.findIndex((c) => u < c);
    return this.names[i < 0 ? this.names.length - 1 : i]!;
  }

  /** The generator's state, for checkpoints. */
  get state(): number {
    return this.random.state;
  }
  set state(value: number) {
    this.random.state = value >>> 0;
  }
}
