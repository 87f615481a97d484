// The Tensor handle: creation from every TypedArray kind, dtype conversion,
// float16/bfloat16, raw bytes, nested arrays, disposal, 0-d and empty tensors.
import { describe, it, expect } from 'vitest';

import { isTensor, tensor, tensorFromBytes, type DType, type Tensor } from '../lib/index.js';

/** The bytes a TypedArray holds (respecting its offset into a larger buffer). */
const bytesOf = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('creating a Tensor from each TypedArray kind', () => {
  const cases: Array<{ data: ArrayBufferView & ArrayLike<number | bigint>; dtype: DType; kind: Function }> = [
    { data: new Float32Array([1.5, -2.25, 3e-8, 1e30, -0, Math.fround(Math.PI)]), dtype: 'float32', kind: Float32Array },
    { data: new Float64Array([Math.PI, -Math.E, 1e-300, 1e300, 0.1, -7]), dtype: 'float64', kind: Float64Array },
    { data: new Int32Array([0, -1, 2147483647, -2147483648, 42, 7]), dtype: 'int32', kind: Int32Array },
    {
      data: new BigInt64Array([0n, -1n, 2n ** 60n + 1n, -(2n ** 63n), 2n ** 63n - 1n, 12345678901234567n]),
      dtype: 'int64',
      kind: BigInt64Array,
    },
    { data: new Uint8Array([0, 1, 127, 128, 254, 255]), dtype: 'uint8', kind: Uint8Array },
    { data: new Int16Array([0, -1, 32767, -32768, 5, 6]), dtype: 'int16', kind: Int16Array },
    { data: new Int8Array([0, -1, 127, -128, 5, 6]), dtype: 'int8', kind: Int8Array },
  ];

  for (const { data, dtype, kind } of cases) {
    it(`${kind.name} → ${dtype} and back, value for value`, () => {
      const t = tensor(data, [2, 3]);
      expect(t.dtype).toBe(dtype);
      expect(t.shape).toEqual([2, 3]);
      expect(t.numel).toBe(6);
      expect(t.device).toBe('cpu');
      expect(t.disposed).toBe(false);
      expect(isTensor(t)).toBe(true);
      const back = t.toArray();
      expect(back).toBeInstanceOf(kind);
      expect(back).toEqual(data);
      // The raw bytes are the TypedArray's own bytes (little-endian, same dtype).
      expect(t.toBuffer().equals(bytesOf(data))).toBe(true);
      t.dispose();
    });
  }

  it('keeps -0 and large/small float32 values bit for bit', () => {
    const data = new Float32Array([-0, 3.4028234663852886e38, 1.401298464324817e-45]);
    const back = tensor(data, [3]).toArray() as Float32Array;
    expect(Object.is(back[0], -0)).toBe(true);
    expect(back[1]).toBe(3.4028234663852886e38);
    expect(back[2]).toBe(1.401298464324817e-45);
  });

  it('reads a TypedArray that is a view into a larger buffer from its own offset', () => {
    const whole = new Float32Array([100, 200, 1, 2, 3, 4, 300]);
    const view = whole.subarray(2, 6); // [1, 2, 3, 4], byteOffset 8
    const t = tensor(view, [2, 2]);
    expect(t.toArray()).toEqual(new Float32Array([1, 2, 3, 4]));
    const bytes = Buffer.from(new Int32Array([9, 8, 7, 6, 5]).buffer, 4, 12); // [8, 7, 6] as raw bytes
    expect(tensorFromBytes(bytes, [3], 'int32').toArray()).toEqual(new Int32Array([8, 7, 6]));
  });

  it('copies the data: changing the TypedArray afterwards does not change the tensor', () => {
    const data = new Float32Array([1, 2, 3]);
    const t = tensor(data, [3]);
    data[0] = 99;
    expect(t.toArray()).toEqual(new Float32Array([1, 2, 3]));
    const out = t.toArray() as Float32Array;
    out[1] = 42;
    expect(t.toArray()).toEqual(new Float32Array([1, 2, 3]));
  });

  it('a bool tensor reads back as Uint8Array of 0/1', () => {
    const t = tensor(new Uint8Array([0, 1, 5, 0]), [4], 'bool');
    expect(t.dtype).toBe('bool');
    const back = t.toArray();
    expect(back).toBeInstanceOf(Uint8Array);
    expect(back).toEqual(new Uint8Array([0, 1, 1, 0]));
  });
});

describe('dtype conversion via the third argument', () => {
  it('Float64Array → float32', () => {
    const t = tensor(new Float64Array([0.5, -1.25, 1 / 3]), [3], 'float32');
    expect(t.dtype).toBe('float32');
    const back = t.toArray();
    expect(back).toBeInstanceOf(Float32Array);
    expect(back).toEqual(new Float32Array([0.5, -1.25, Math.fround(1 / 3)]));
    expect(t.toBuffer().length).toBe(12);
  });

  it('Float32Array → int64 reads back as BigInt64Array', () => {
    const t = tensor(new Float32Array([0, 1, -2, 1024, 16777216]), [5], 'int64');
    expect(t.dtype).toBe('int64');
    const back = t.toArray();
    expect(back).toBeInstanceOf(BigInt64Array);
    expect(back).toEqual(new BigInt64Array([0n, 1n, -2n, 1024n, 16777216n]));
  });

  it('Int32Array → float64 and BigInt64Array → int32', () => {
    expect(tensor(new Int32Array([3, -4]), [2], 'float64').toArray()).toEqual(new Float64Array([3, -4]));
    expect(tensor(new BigInt64Array([7n, -8n]), [2], 'int32').toArray()).toEqual(new Int32Array([7, -8]));
  });

  it('Uint8Array → float32', () => {
    const t = tensor(new Uint8Array([0, 200, 255]), [3], 'float32');
    expect(t.toArray()).toEqual(new Float32Array([0, 200, 255]));
  });
});

describe('float16 and bfloat16', () => {
  const exact = [0.5, -2, 1024, 0, 1, -0.25, 3];

  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`${dtype}: exactly representable values survive the round trip (toArray upcasts to Float32Array)`, () => {
      const t = tensor(new Float32Array(exact), [exact.length], dtype);
      expect(t.dtype).toBe(dtype);
      expect(t.toBuffer().length).toBe(exact.length * 2); // 2 bytes per element in storage
      const back = t.toArray();
      expect(back).toBeInstanceOf(Float32Array);
      expect(Array.from(back as Float32Array)).toEqual(exact);
    });
  }

  it('float16 rounds a value it cannot represent (1/3 → 0.333251953125), but only to 11 significant bits', () => {
    const back = tensor(new Float32Array([1 / 3]), [1], 'float16').toArray() as Float32Array;
    expect(back[0]).toBe(0.333251953125);
    expect(back[0]).not.toBe(Math.fround(1 / 3));
  });

  it('bfloat16 keeps the float32 range where float16 overflows to infinity', () => {
    const big = new Float32Array([2 ** 100, -(2 ** 100), 1e30]);
    const bf = tensor(big, [3], 'bfloat16').toArray() as Float32Array;
    expect(bf[0]).toBe(2 ** 100);
    expect(bf[1]).toBe(-(2 ** 100));
    expect(Math.abs(bf[2]! - 1e30) / 1e30).toBeLessThan(1 / 128); // 8 significant bits
    const f16 = tensor(big, [3], 'float16').toArray() as Float32Array;
    expect(f16[0]).toBe(Infinity);
    expect(f16[1]).toBe(-Infinity);
  });

  it('a Uint16Array of raw bits: 0x3C00 is 1.0 in float16, 0x3F80 is 1.0 in bfloat16', () => {
    const f16 = tensor(new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff]), [4], 'float16');
    expect(f16.dtype).toBe('float16');
    expect(f16.toArray()).toEqual(new Float32Array([1, -2, 0.5, 65504]));
    const bf16 = tensor(new Uint16Array([0x3f80, 0xc000, 0x3f00]), [3], 'bfloat16');
    expect(bf16.dtype).toBe('bfloat16');
    expect(bf16.toArray()).toEqual(new Float32Array([1, -2, 0.5]));
  });

  it('toBuffer gives the raw 16-bit patterns, little-endian', () => {
    expect([...tensor(new Float32Array([1]), [1], 'float16').toBuffer()]).toEqual([0x00, 0x3c]);
    expect([...tensor(new Float32Array([1]), [1], 'bfloat16').toBuffer()]).toEqual([0x80, 0x3f]);
    const bits = new Uint16Array([0x3c00, 0xbc00]);
    expect(tensor(bits, [2], 'float16').toBuffer().equals(bytesOf(bits))).toBe(true);
  });

  it('a Uint16Array without float16/bfloat16 dtype is refused with a message saying why', () => {
    expect(() => tensor(new Uint16Array([1]), [1])).toThrow(/Uint16Array.*float16.*bfloat16/);
    expect(() => tensor(new Uint16Array([1]), [1], 'float32')).toThrow(/raw float16\/bfloat16 bits/);
  });
});

describe('Tensor.to', () => {
  it("to(undefined, 'float64') is a converted copy that outlives the original", () => {
    const a = tensor(new Float32Array([1.5, 2.5, -3]), [3]);
    const b = a.to(undefined, 'float64');
    expect(b).not.toBe(a);
    expect(b.dtype).toBe('float64');
    expect(b.device).toBe('cpu');
    expect(b.shape).toEqual([3]);
    expect(b.toArray()).toEqual(new Float64Array([1.5, 2.5, -3]));
    a.dispose();
    expect(b.disposed).toBe(false);
    expect(b.toArray()).toEqual(new Float64Array([1.5, 2.5, -3]));
  });

  it("to('cpu') and to() with no arguments copy without changing dtype", () => {
    const a = tensor(new Int32Array([1, 2, 3, 4]), [2, 2]);
    for (const b of [a.to('cpu'), a.to(), a.to(null)]) {
      expect(b).not.toBe(a);
      expect(b.dtype).toBe('int32');
      expect(b.device).toBe('cpu');
      expect(b.shape).toEqual([2, 2]);
      expect(b.toArray()).toEqual(new Int32Array([1, 2, 3, 4]));
    }
    a.dispose();
  });

  it("to(undefined, 'bfloat16') then to(undefined, 'float32') keeps exact values", () => {
    const a = tensor(new Float32Array([0.5, -2, 1024]), [3]);
    const b = a.to(undefined, 'bfloat16');
    expect(b.dtype).toBe('bfloat16');
    expect(b.to(undefined, 'float32').toArray()).toEqual(new Float32Array([0.5, -2, 1024]));
  });

  it('toString describes the tensor', () => {
    const s = tensor(new Float32Array(6), [2, 3]).toString();
    expect(s).toMatch(/shape=\[2, 3\]/);
    expect(s).toMatch(/float32/);
    expect(s).toMatch(/cpu/);
  });
});

describe('tensorFromBytes', () => {
  for (const [dtype, data] of [
    ['float32', new Float32Array([1.25, -7, 3e10, 0])],
    ['float64', new Float64Array([Math.PI, -1e-200, 5, 6])],
    ['int64', new BigInt64Array([1n, -(2n ** 62n), 3n, 4n])],
    ['int32', new Int32Array([-5, 6, 7, 8])],
  ] as const) {
    it(`round trip through toBuffer for ${dtype}`, () => {
      const a = tensor(data, [2, 2]);
      const bytes = a.toBuffer();
      expect(bytes.equals(bytesOf(data))).toBe(true);
      const b = tensorFromBytes(bytes, [2, 2], dtype);
      expect(b.dtype).toBe(dtype);
      expect(b.shape).toEqual([2, 2]);
      expect(b.toArray()).toEqual(data);
      expect(b.toBuffer().equals(bytes)).toBe(true);
    });
  }

  it('float16 from bytes', () => {
    const bytes = Buffer.from([0x00, 0x3c, 0x00, 0xc0]); // 1.0, -2.0
    const t = tensorFromBytes(bytes, [2], 'float16');
    expect(t.dtype).toBe('float16');
    expect(t.toArray()).toEqual(new Float32Array([1, -2]));
  });

  it('a byte count that does not match the shape is a RangeError naming both', () => {
    expect(() => tensorFromBytes(new Uint8Array(7), [2], 'float32')).toThrow(RangeError);
    expect(() => tensorFromBytes(new Uint8Array(7), [2], 'float32')).toThrow(/7 bytes given.*float32.*needs 8/);
    expect(() => tensorFromBytes(new Uint8Array(8), [2], 'float128' as DType)).toThrow(/unknown dtype 'float128'/);
  });
});

describe('tensor() with nested number arrays', () => {
  it('infers the shape and defaults to float32', () => {
    const t = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.toArray()).toEqual(new Float32Array([1, 2, 3, 4, 5, 6]));
  });

  it('honours an explicit dtype (int64 ids, as a tokenizer would give)', () => {
    const t = tensor([[2, 791, 3]], undefined, 'int64');
    expect(t.shape).toEqual([1, 3]);
    expect(t.dtype).toBe('int64');
    expect(t.toArray()).toEqual(new BigInt64Array([2n, 791n, 3n]));
  });

  it('infers three dimensions', () => {
    const t = tensor([[[1], [2]], [[3], [4]], [[5], [6]]], undefined, 'int32');
    expect(t.shape).toEqual([3, 2, 1]);
    expect(t.toArray()).toEqual(new Int32Array([1, 2, 3, 4, 5, 6]));
  });

  it('accepts an explicit shape with the same element count (a reshape)', () => {
    const t = tensor([1, 2, 3, 4, 5, 6], [3, 2]);
    expect(t.shape).toEqual([3, 2]);
    expect(t.toArray()).toEqual(new Float32Array([1, 2, 3, 4, 5, 6]));
  });

  it('integers beyond 2^31 stay exact in int64', () => {
    expect(tensor([2 ** 40 + 1], undefined, 'int64').toArray()).toEqual(new BigInt64Array([2n ** 40n + 1n]));
  });

  it('refuses ragged arrays, non-numbers and a mismatched shape with clear messages', () => {
    expect(() => tensor([[1, 2], [3]])).toThrow(/ragged nested array at depth 1/);
    expect(() => tensor(['a'] as never)).toThrow(/element 0 is string, not a number/);
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow(/data has shape \[3\] but shape \[2,2\] was given/);
  });

  it('a TypedArray without a shape is a TypeError', () => {
    expect(() => tensor(new Float32Array(2))).toThrow(TypeError);
    expect(() => tensor(new Float32Array(2))).toThrow(/needs its shape/);
  });
});

describe('0-d and empty tensors', () => {
  it('0-d: shape [], one element', () => {
    const t = tensor(new Float32Array([5.5]), []);
    expect(t.shape).toEqual([]);
    expect(t.numel).toBe(1);
    expect(t.toArray()).toEqual(new Float32Array([5.5]));
    expect(t.toBuffer().length).toBe(4);
    const i = t.to(undefined, 'int64');
    expect(i.shape).toEqual([]);
    expect(i.toArray()).toEqual(new BigInt64Array([5n]));
    expect(tensorFromBytes(t.toBuffer(), [], 'float32').toArray()).toEqual(new Float32Array([5.5]));
  });

  it('a plain number is a 0-d tensor (NestedNumbers includes number)', () => {
    const t = tensor(2.5);
    expect(t.shape).toEqual([]);
    expect(t.dtype).toBe('float32');
    expect(t.toArray()).toEqual(new Float32Array([2.5]));
    expect(tensor(7, undefined, 'int64').toArray()).toEqual(new BigInt64Array([7n]));
  });

  it('0-d needs exactly one element', () => {
    expect(() => tensor(new Float32Array(0), [])).toThrow(/data has 0 elements but shape \[\] needs 1/);
  });

  it('empty: shape [0, 3], no elements, empty arrays and buffers', () => {
    const t = tensor(new Float32Array(0), [0, 3]);
    expect(t.shape).toEqual([0, 3]);
    expect(t.numel).toBe(0);
    const back = t.toArray();
    expect(back).toBeInstanceOf(Float32Array);
    expect(back.length).toBe(0);
    expect(t.toBuffer().length).toBe(0);
    const c = t.to(undefined, 'int64');
    expect(c.shape).toEqual([0, 3]);
    expect(c.toArray()).toEqual(new BigInt64Array(0));
    expect(tensorFromBytes(new Uint8Array(0), [3, 0], 'float64').shape).toEqual([3, 0]);
  });

  it('an empty nested array is a 1-D tensor of length 0', () => {
    const t = tensor([]);
    expect(t.shape).toEqual([0]);
    expect(t.numel).toBe(0);
    expect(t.toArray().length).toBe(0);
  });
});

describe('dispose', () => {
  it("after dispose every getter and method throws an Error mentioning 'disposed'", () => {
    const t = tensor(new Float32Array([1, 2]), [2]);
    t.dispose();
    expect(t.disposed).toBe(true);
    const uses: Array<[string, (t: Tensor) => unknown]> = [
      ['shape', (x) => x.shape],
      ['dtype', (x) => x.dtype],
      ['device', (x) => x.device],
      ['numel', (x) => x.numel],
      ['toArray', (x) => x.toArray()],
      ['toBuffer', (x) => x.toBuffer()],
      ['to', (x) => x.to('cpu')],
      ['to(dtype)', (x) => x.to(undefined, 'float64')],
    ];
    for (const [name, use] of uses) {
      let caught: unknown;
      try {
        use(t);
      } catch (error) {
        caught = error;
      }
      expect(caught, name).toBeInstanceOf(Error);
      expect((caught as Error).message, name).toMatch(/disposed/);
      expect((caught as Error).message, name).toMatch(new RegExp(name.replace(/\(.*/, '')));
    }
  });

  it('dispose twice is harmless, toString says disposed, and it is still a Tensor', () => {
    const t = tensor(new Int32Array([1]), [1]);
    t.dispose();
    expect(() => t.dispose()).not.toThrow();
    expect(t.disposed).toBe(true);
    expect(t.toString()).toMatch(/disposed/);
    expect(isTensor(t)).toBe(true);
  });

  it('disposing one tensor leaves its copies and its source alone', () => {
    const a = tensor(new Float32Array([1, 2]), [2]);
    const b = a.to();
    b.dispose();
    expect(a.disposed).toBe(false);
    expect(a.toArray()).toEqual(new Float32Array([1, 2]));
  });

  it('a disposed tensor cannot be the source of a new tensor through tensorFromBytes, but its bytes taken earlier can', () => {
    const a = tensor(new Float64Array([4, 5]), [2]);
    const bytes = a.toBuffer();
    a.dispose();
    expect(() => a.toBuffer()).toThrow(/disposed/);
    expect(tensorFromBytes(bytes, [2], 'float64').toArray()).toEqual(new Float64Array([4, 5]));
  });
});

describe('isTensor', () => {
  it('is false for things that are not Tensor handles', () => {
    expect(isTensor(new Float32Array(1))).toBe(false);
    expect(isTensor({ shape: [1], dtype: 'float32' })).toBe(false);
    expect(isTensor(null)).toBe(false);
    expect(isTensor('x')).toBe(false);
  });
});
