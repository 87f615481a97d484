// Creating tensors from JS data. The Tensor itself is the addon's handle
// (bindings/native.ts describes it); these helpers cover the common ways in.

import { loadNative } from '../../bindings/load.js';
import type { DType, Tensor } from '../../bindings/native.js';

export type { Device, DType, Tensor, TensorArray } from '../../bindings/native.js';

/**
 * A tensor from JS data, like `torch.tensor`:
 *   tensor(new Float32Array([1, 2, 3, 4]), [2, 2])
 *   tensor([[2, 791, 3]], undefined, 'int64')      // nested arrays: the shape is inferred
 * A TypedArray keeps its own dtype unless `dtype` says otherwise; plain numbers
 * default to float32. A Uint16Array holds raw float16/bfloat16 bits and needs that dtype.
 */
export function tensor(data: ArrayBufferView | NestedNumbers, shape?: number[], dtype?: DType): Tensor {
  if (ArrayBuffer.isView(data)) {
    if (!shape) throw new TypeError('tensor(data, shape, dtype?): a TypedArray needs its shape');
    return loadNative().tensorFromArray(data, shape, dtype);
  }
  const inferred = inferShape(data);
  if (shape && shape.reduce((a, b) => a * b, 1) !== inferred.reduce((a, b) => a * b, 1)) {
    throw new RangeError(`tensor: data has shape [${inferred}] but shape [${shape}] was given`);
  }
  const flat: unknown[] = Array.isArray(data) ? (data as unknown[]).flat(Infinity) : [data];
  flat.forEach((value, i) => {
    if (typeof value !== 'number') throw new TypeError(`tensor: element ${i} is ${typeof value}, not a number`);
  });
  const target = dtype ?? 'float32';
  // Integers up to 2^53 are exact in float64, so one path serves every dtype.
  const values = Float64Array.from(flat as number[]);
  return loadNative().tensorFromArray(values, shape ?? inferred, target);
}

/** A tensor from raw little-endian bytes in `dtype` (how safetensors stores them). */
export function tensorFromBytes(bytes: Uint8Array, shape: number[], dtype: DType): Tensor {
  return loadNative().tensorFromBytes(bytes, shape, dtype);
}

/** True for a live or disposed Tensor handle. */
export function isTensor(value: unknown): value is Tensor {
  return value instanceof (loadNative().Tensor as unknown as new () => Tensor);
}

export type NestedNumbers = number | NestedNumbers[];

function inferShape(data: NestedNumbers): number[] {
  const shape: number[] = [];
  let level: NestedNumbers = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0] as NestedNumbers;
  }
  checkRagged(data, shape, 0);
  return shape;
}

function checkRagged(data: NestedNumbers, shape: number[], depth: number): void {
  if (depth === shape.length) return;
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new RangeError(`tensor: ragged nested array at depth ${depth}: expected length ${shape[depth]}`);
  }
  for (const item of data) checkRagged(item, shape, depth + 1);
}
