// Batch lengths rounded up to a few buckets. On CUDA each step shape gets a CUDA graph of its
// own (native/cuda_graph_step.h), which is replayed whenever that shape comes again: rounding
// every batch's length up to a multiple of LENGTH_BUCKET (at most the max length) leaves a run
// a handful of shapes, for at most LENGTH_BUCKET − 1 columns of padding per batch.

/** Batch lengths on CUDA are multiples of this (or the max length). */
export const LENGTH_BUCKET = 64;

/** `length` rounded up to the next multiple of `bucket`, but not past `maxLength` (nor below `length`). */
export function bucketedLength(length: number, maxLength: number, bucket = LENGTH_BUCKET): number {
  if (!Number.isInteger(bucket) || bucket < 1) throw new RangeError(`bucketedLength: the bucket must be an integer >= 1, got ${bucket}`);
  return Math.max(length, Math.min(maxLength, Math.ceil(length / bucket) * bucket));
}
