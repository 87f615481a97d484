import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  DTYPE_BYTES,
  SafetensorsError,
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensorsAtomic,
  type SafetensorsDtype,
} from '../lib/model/safetensors.js';
import { writeFileAtomic } from '../lib/util/atomic-file.js';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'safetensors-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function tmpDir(): string {
  return fs.mkdtempSync(path.join(tmpRoot, 'case-'));
}

/**
 * Builds a safetensors file by hand, independent of the library's writer:
 * u64 LE header length, the header text, then the data section.
 */
function buildFile(header: string | object, data: Buffer = Buffer.alloc(0), padTo = 1): Buffer {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  while (Buffer.byteLength(text) % padTo !== 0) text += ' ';
  const headerBytes = Buffer.from(text, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  return Buffer.concat([prefix, headerBytes, data]);
}

/** Runs fn, expects a SafetensorsError, and returns its message. */
function errorMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SafetensorsError);
    return (err as Error).message;
  }
  throw new Error('expected a SafetensorsError, but nothing was thrown');
}

function concat(chunks: Buffer[]): Buffer {
  return Buffer.concat(chunks);
}

const SRC = '/models/ckpt.safetensors';

describe('DTYPE_BYTES', () => {
  it('has the element size of every supported dtype', () => {
    expect(DTYPE_BYTES).toEqual({ F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 });
  });
});

describe('round trip', () => {
  const f32 = Buffer.from(new Float32Array([1.5, -2, 3.25, Math.PI, 0, -0]).buffer);
  const f64 = Buffer.from(new Float64Array([Math.E]).buffer);
  const i64 = Buffer.from(new BigInt64Array([-1n, 2n ** 62n]).buffer);
  const tensors: Array<{ name: string; dtype: SafetensorsDtype; shape: number[]; data: Buffer | Uint8Array }> = [
    { name: 'encoder.layer.0.weight', dtype: 'F32', shape: [2, 3], data: f32 },
    { name: 'scalar', dtype: 'F64', shape: [], data: f64 },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: Buffer.alloc(0) },
    { name: 'ids', dtype: 'I64', shape: [2], data: i64 },
    { name: 'half', dtype: 'F16', shape: [3], data: Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b]) },
    { name: 'brain', dtype: 'BF16', shape: [1, 1, 2], data: Buffer.from([0x80, 0x3f, 0x49, 0x40]) },
    { name: 'i32', dtype: 'I32', shape: [1], data: Buffer.from(new Int32Array([-123456]).buffer) },
    { name: 'i16', dtype: 'I16', shape: [2], data: Buffer.from(new Int16Array([-2, 7]).buffer) },
    { name: 'i8', dtype: 'I8', shape: [3], data: new Uint8Array([0xff, 0x00, 0x7f]) },
    { name: 'u8', dtype: 'U8', shape: [1, 3], data: new Uint8Array([1, 2, 255]) },
    { name: 'mask', dtype: 'BOOL', shape: [2, 2], data: new Uint8Array([1, 0, 0, 1]) },
    // Integer-like names get reordered by JS objects; the writer/reader must not care.
    { name: '0', dtype: 'U8', shape: [1], data: new Uint8Array([42]) },
  ];

  it('serializes and parses back every dtype byte-exactly, in order', () => {
    const file = parseSafetensors(concat(serializeSafetensors(tensors)));
    expect([...file.tensors.keys()]).toEqual(tensors.map((t) => t.name));
    for (const t of tensors) {
      const e = file.tensors.get(t.name)!;
      expect(e.name).toBe(t.name);
      expect(e.dtype).toBe(t.dtype);
      expect(e.shape).toEqual(t.shape);
      expect(e.data.length).toBe(t.data.byteLength);
      expect(Buffer.compare(e.data, Buffer.from(t.data))).toBe(0);
    }
    expect(file.metadata).toEqual({ format: 'pt' });
    const scalar = file.tensors.get('scalar')!;
    expect(scalar.shape).toEqual([]);
    expect(scalar.data.readDoubleLE(0)).toBe(Math.E);
    expect(file.tensors.get('empty')!.data.length).toBe(0);
  });

  it('writes a header padded to 8 bytes with contiguous data_offsets in the given order', () => {
    const chunks = serializeSafetensors(tensors, { format: 'pt', note: 'hi' });
    expect(chunks.length).toBe(1 + tensors.length);
    const bytes = concat(chunks);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const headerText = bytes.subarray(8, 8 + n).toString('utf8');
    const header = JSON.parse(headerText);
    expect(header.__metadata__).toEqual({ format: 'pt', note: 'hi' });
    // Header keys appear in the given order in the text (JSON.parse would reorder "0").
    const positions = tensors.map((t) => headerText.indexOf(JSON.stringify(t.name) + ':'));
    expect(positions.every((p, i) => p > 0 && (i === 0 || p > positions[i - 1]))).toBe(true);
    let expectedBegin = 0;
    for (const t of tensors) {
      const [begin, end] = header[t.name].data_offsets;
      expect(begin).toBe(expectedBegin);
      expect(end - begin).toBe(t.data.byteLength);
      expectedBegin = end;
    }
    expect(bytes.length).toBe(8 + n + expectedBegin);
  });

  it('returns data as views into the input buffer, not copies', () => {
    const bytes = concat(serializeSafetensors(tensors));
    const e = parseSafetensors(bytes).tensors.get('encoder.layer.0.weight')!;
    expect(e.data.buffer).toBe(bytes.buffer);
  });

  it('omits __metadata__ when given {}', () => {
    const bytes = concat(serializeSafetensors([{ name: 'x', dtype: 'U8', shape: [1], data: new Uint8Array([9]) }], {}));
    const n = Number(bytes.readBigUInt64LE(0));
    expect(JSON.parse(bytes.subarray(8, 8 + n).toString())).not.toHaveProperty('__metadata__');
    expect(parseSafetensors(bytes).metadata).toEqual({});
  });

  it('round-trips through disk with writeSafetensorsAtomic / readSafetensors', async () => {
    const file = path.join(tmpDir(), 'nested', 'dir', 'model.safetensors');
    await writeSafetensorsAtomic(file, tensors, { format: 'pt', step: '100' });
    const parsed = await readSafetensors(file);
    expect(parsed.metadata).toEqual({ format: 'pt', step: '100' });
    for (const t of tensors) expect(Buffer.compare(parsed.tensors.get(t.name)!.data, Buffer.from(t.data))).toBe(0);
    // Contiguous offsets: each tensor's view starts right where the previous one ended.
    const views = [...parsed.tensors.values()].map((e) => e.data);
    for (let i = 1; i < views.length; i++) {
      expect(views[i].byteOffset).toBe(views[i - 1].byteOffset + views[i - 1].length);
    }
    expect(fs.readdirSync(path.dirname(file))).toEqual(['model.safetensors']);
  });
});

describe('parsing a hand-built file', () => {
  it('reads tensors, offsets, metadata and space padding written by another writer', () => {
    // Data section: a BF16 [2] tensor at [0,4) then an F32 [2,1] tensor at [4,12).
    const data = Buffer.alloc(12);
    data.writeUInt16LE(0x3f80, 0); // bf16 1.0
    data.writeUInt16LE(0xc000, 2); // bf16 -2.0
    data.writeFloatLE(0.5, 4);
    data.writeFloatLE(-7.25, 8);
    // Keys deliberately listed in the opposite order from the data layout.
    const header =
      '{"w":{"dtype":"F32","shape":[2,1],"data_offsets":[4,12]},' +
      '"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},' +
      '"__metadata__":{"format":"pt","author":"me"}}';
    const file = parseSafetensors(buildFile(header, data, 8), SRC);
    expect(file.metadata).toEqual({ format: 'pt', author: 'me' });
    // Map order follows the data layout.
    expect([...file.tensors.keys()]).toEqual(['b', 'w']);
    const w = file.tensors.get('w')!;
    expect(w).toMatchObject({ name: 'w', dtype: 'F32', shape: [2, 1] });
    expect([w.data.readFloatLE(0), w.data.readFloatLE(4)]).toEqual([0.5, -7.25]);
    const b = file.tensors.get('b')!;
    expect(b).toMatchObject({ name: 'b', dtype: 'BF16', shape: [2] });
    expect([...b.data]).toEqual([0x80, 0x3f, 0x00, 0xc0]);
  });

  it('accepts a file with no tensors', () => {
    const file = parseSafetensors(buildFile('{}'), SRC);
    expect(file.tensors.size).toBe(0);
    expect(file.metadata).toEqual({});
  });
});

describe('parse errors name the file and the tensor', () => {
  const tensor = (fields: object) => ({ 'enc.w': fields });
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const data8 = Buffer.alloc(8);

  it('file shorter than 8 bytes', () => {
    const msg = errorMessage(() => parseSafetensors(Buffer.from([1, 2, 3]), SRC));
    expect(msg).toContain(SRC);
    expect(msg).toMatch(/3 bytes/);
  });

  it('header length larger than the file', () => {
    const bytes = buildFile('{}');
    bytes.writeBigUInt64LE(1000n, 0);
    const msg = errorMessage(() => parseSafetensors(bytes, SRC));
    expect(msg).toContain(SRC);
    expect(msg).toContain('truncated: header says 1000 bytes but file has 2');
  });

  it('absurd header length (beyond 2^53) does not crash', () => {
    const bytes = Buffer.alloc(16);
    bytes.writeBigUInt64LE(2n ** 64n - 1n, 0);
    expect(errorMessage(() => parseSafetensors(bytes, SRC))).toMatch(/truncated/);
  });

  it('header that is not JSON, or not an object', () => {
    expect(errorMessage(() => parseSafetensors(buildFile('{"a": '), SRC))).toMatch(
      new RegExp(`^${SRC}: header is not valid UTF-8 JSON`),
    );
    expect(errorMessage(() => parseSafetensors(buildFile('[1,2]'), SRC))).toContain(`${SRC}: header must be a JSON object`);
    expect(errorMessage(() => parseSafetensors(buildFile('null'), SRC))).toContain('header must be a JSON object');
    const badUtf8 = buildFile('{"x":1}');
    badUtf8[10] = 0xff;
    expect(errorMessage(() => parseSafetensors(badUtf8, SRC))).toContain('not valid UTF-8 JSON');
  });

  it('uses a placeholder name when no source is given', () => {
    expect(errorMessage(() => parseSafetensors(Buffer.alloc(2)))).toMatch(/^<buffer>: /);
  });

  const tensorCases: Array<[string, object, RegExp]> = [
    ['entry not an object', { 'enc.w': 5 }, /must be an object/],
    ['missing dtype', tensor({ shape: [2], data_offsets: [0, 8] }), /missing "dtype"/],
    ['missing shape', tensor({ dtype: 'F32', data_offsets: [0, 8] }), /missing "shape"/],
    ['missing data_offsets', tensor({ dtype: 'F32', shape: [2] }), /missing "data_offsets"/],
    ['dtype not a string', tensor({ ...ok, dtype: 4 }), /"dtype" must be a string/],
    ['unknown dtype', tensor({ ...ok, dtype: 'F8_E4M3' }), /unknown dtype "F8_E4M3"/],
    ['prototype name as dtype', tensor({ ...ok, dtype: 'toString' }), /unknown dtype "toString"/],
    ['shape not an array', tensor({ ...ok, shape: '2' }), /"shape" must be an array/],
    ['negative dim', tensor({ ...ok, shape: [-2] }), /invalid dimension -2/],
    ['fractional dim', tensor({ ...ok, shape: [2.5] }), /invalid dimension 2.5/],
    ['string dim', tensor({ ...ok, shape: ['2'] }), /invalid dimension "2"/],
    ['offsets wrong length', tensor({ ...ok, data_offsets: [0] }), /"data_offsets" must be \[begin, end\]/],
    ['offsets not numbers', tensor({ ...ok, data_offsets: ['0', '8'] }), /"data_offsets" must be/],
    ['negative offset', tensor({ ...ok, data_offsets: [-8, 0] }), /"data_offsets" must be/],
    ['offsets out of order', tensor({ ...ok, data_offsets: [8, 0] }), /out of order/],
    [
      'offsets past the end',
      tensor({ ...ok, shape: [4], data_offsets: [0, 16] }),
      /needs bytes \[0,16\) of the data section but the file has only 8: the file is truncated/,
    ],
    ['byte length != numel * size', tensor({ ...ok, shape: [3] }), /span 8 bytes but shape \[3\] of F32 needs 3 × 4 = 12 bytes/],
  ];

  for (const [label, header, pattern] of tensorCases) {
    it(label, () => {
      const msg = errorMessage(() => parseSafetensors(buildFile(header, data8), SRC));
      expect(msg).toContain(SRC);
      expect(msg).toContain('tensor "enc.w"');
      expect(msg).toMatch(pattern);
    });
  }

  it('overlapping tensors', () => {
    const header = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    };
    const msg = errorMessage(() => parseSafetensors(buildFile(header, Buffer.alloc(12)), SRC));
    expect(msg).toContain(SRC);
    expect(msg).toMatch(/tensor "b" .*overlaps tensor "a"/);
  });

  it('empty tensors do not count as overlapping', () => {
    const header = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
    };
    expect(parseSafetensors(buildFile(header, Buffer.alloc(8)), SRC).tensors.size).toBe(2);
  });

  it('__metadata__ with non-string values or of the wrong type', () => {
    const withNumber = { __metadata__: { format: 'pt', step: 100 } };
    const msg = errorMessage(() => parseSafetensors(buildFile(withNumber), SRC));
    expect(msg).toContain(SRC);
    expect(msg).toMatch(/"__metadata__" value for key "step" must be a string, got 100/);
    expect(errorMessage(() => parseSafetensors(buildFile({ __metadata__: ['pt'] }), SRC))).toMatch(
      /"__metadata__" must be an object/,
    );
  });

  it('readSafetensors names the path for a truncated file on disk', async () => {
    const file = path.join(tmpDir(), 'cut.safetensors');
    const full = concat(
      serializeSafetensors([
        { name: 'first', dtype: 'U8', shape: [4], data: new Uint8Array(4) },
        { name: 'second', dtype: 'F32', shape: [4], data: new Uint8Array(16) },
      ]),
    );
    fs.writeFileSync(file, full.subarray(0, full.length - 3));
    const err = await readSafetensors(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toContain('tensor "second" needs bytes [4,20) of the data section but the file has only 17');
  });

  it('readSafetensors wraps a missing file in a SafetensorsError', async () => {
    const file = path.join(tmpDir(), 'nope.safetensors');
    const err = await readSafetensors(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toContain(file);
  });
});

describe('serializeSafetensors rejects bad input', () => {
  const u8 = (n: number) => new Uint8Array(n);
  const cases: Array<[string, Parameters<typeof serializeSafetensors>[0], RegExp]> = [
    ['wrong byte length', [{ name: 'w', dtype: 'F32', shape: [2], data: u8(7) }], /tensor "w": data has 7 bytes/],
    ['duplicate names', [{ name: 'w', dtype: 'U8', shape: [1], data: u8(1) }, { name: 'w', dtype: 'U8', shape: [1], data: u8(1) }], /tensor "w": duplicate/],
    ['reserved name', [{ name: '__metadata__', dtype: 'U8', shape: [1], data: u8(1) }], /reserved/],
    ['unknown dtype', [{ name: 'w', dtype: 'F8' as SafetensorsDtype, shape: [1], data: u8(1) }], /unknown dtype "F8"/],
    ['bad shape', [{ name: 'w', dtype: 'U8', shape: [-1], data: u8(0) }], /invalid dimension -1/],
  ];
  for (const [label, input, pattern] of cases) {
    it(label, () => expect(errorMessage(() => serializeSafetensors(input))).toMatch(pattern));
  }

  it('non-string metadata', () => {
    const bad = { step: 3 } as unknown as Record<string, string>;
    expect(errorMessage(() => serializeSafetensors([], bad))).toMatch(/metadata value for key "step"/);
  });
});

describe('writeFileAtomic', () => {
  it('writes strings and bytes, replacing the old file, and leaves no temp files', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, 'old');
    await writeFileAtomic(file, ['{"a":', Buffer.from('1'), new Uint8Array([0x7d])]);
    expect(fs.readFileSync(file, 'utf8')).toBe('{"a":1}');
    expect(fs.readdirSync(dir)).toEqual(['config.json']);
  });

  it('creates a missing parent directory', async () => {
    const file = path.join(tmpDir(), 'a', 'b', 'out.txt');
    await writeFileAtomic(file, ['hello']);
    expect(fs.readFileSync(file, 'utf8')).toBe('hello');
  });

  it('keeps the old file and removes the temp file when the chunk iterable throws', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'model.safetensors');
    fs.writeFileSync(file, 'old contents');
    function* chunks(): Generator<Buffer> {
      yield Buffer.alloc(1024, 1);
      throw new Error('disk on fire');
    }
    await expect(writeFileAtomic(file, chunks())).rejects.toThrow('disk on fire');
    expect(fs.readFileSync(file, 'utf8')).toBe('old contents');
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('keeps the old file and removes the temp file on an invalid chunk type', async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, 'old');
    const bad = ['partial', 42 as unknown as string];
    await expect(writeFileAtomic(file, bad)).rejects.toThrow(TypeError);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['config.json']);
  });

  it('leaves no temp file when the rename fails (target is a directory)', async () => {
    const dir = tmpDir();
    const target = path.join(dir, 'taken');
    fs.mkdirSync(path.join(target, 'inner'), { recursive: true });
    await expect(writeFileAtomic(target, ['x'])).rejects.toThrow();
    expect(fs.readdirSync(dir)).toEqual(['taken']);
    expect(fs.readdirSync(target)).toEqual(['inner']);
  });
});
