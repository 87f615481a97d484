// One task's training examples as an endless stream of micro-batches: each epoch
// visits every example once in a shuffled order. The order of epoch e is a pure
// function of (seed, e), so the position {epoch, index} is all a checkpoint needs.

import { Random } from '../data/masking.js';
import type { Example } from './types.js';

export interface StreamPosition {
  epoch: number;
  /** Examples of this epoch already handed out. */
  index: number;
}

export class ExampleStream {
  private order: number[] = [];
  private orderEpoch = -1;
  position: StreamPosition = { epoch: 0, index: 0 };

  constructor(
    readonly examples: readonly Example[],
    readonly batchSize: number,
    private readonly seed: number,
    /** Data-parallel: every rank walks the same shuffled order, W·batchSize examples a step, and takes its slice of them. */
    private readonly shard: { rank: number; worldSize: number } = { rank: 0, worldSize: 1 },
  ) {
    if (examples.length === 0) throw new RangeError('no training examples');
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  }

  /** Micro-batches per epoch (the last one of an epoch may be smaller). */
  get batchesPerEpoch(): number {
    return Math.ceil(this.examples.length / (this.batchSize * this.shard.worldSize));
  }

  /** The next micro-batch's examples; a batch never spans two epochs. */
  next(): Example[] {
    if (this.position.index >= this.examples.length) this.position = { epoch: this.position.epoch + 1, index: 0 };
    const order = this.orderOf(this.position.epoch);
    const { rank, worldSize } = this.shard;
    const index = this.position.index;
    const end = Math.min(this.examples.length, index + this.batchSize * worldSize);
    // This rank's part of the step's examples (split evenly; an epoch's last few may be shared).
    const n = end - index;
    let [from, to] = [index + Math.floor((n * rank) / worldSize), index + Math.floor((n * (rank + 1)) / worldSize)];
    if (from === to) [from, to] = [index + (rank % n), index + (rank % n) + 1];
    const batch = order.slice(from, to).map((i) => this.examples[i]!);
    this.position = { epoch: this.position.epoch, index: end };
    return batch;
  }

  private orderOf(epoch: number): number[] {
    if (epoch !== this.orderEpoch) {
      const random = new Random((this.seed * 1_000_003 + epoch * 7919) >>> 0);
      const order = Array.from(this.examples.keys());
      for (let i = order.length - 1; i > 0; i--) {
        const j = random.int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      this.order = order;
      this.orderEpoch = epoch;
    }
    return this.order;
  }
}
