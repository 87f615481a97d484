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
  ) {
    if (examples.length === 0) throw new RangeError('no training examples');
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  }

  /** Micro-batches per epoch (the last one of an epoch may be smaller). */
  get batchesPerEpoch(): number {
    return Math.ceil(this.examples.length / this.batchSize);
  }

  /** The next micro-batch's examples; a batch never spans two epochs. */
  next(): Example[] {
    if (this.position.index >= this.examples.length) this.position = { epoch: this.position.epoch + 1, index: 0 };
    const order = this.orderOf(this.position.epoch);
    const end = Math.min(this.examples.length, this.position.index + this.batchSize);
    const batch = order.slice(this.position.index, end).map((i) => this.examples[i]!);
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
