// pytorch_model.bin in: the fixtures under test/fixtures/pytorch-bin/ were written by
// torch.save (Debian's python3-torch 1.13, make.py there), each with reference.txt:
// the same weights as Python saw them, in plain text. The reader is checked against
// that, a model dir with only pytorch_model.bin against the same weights in
// model.safetensors, and every malformed file must give an error naming it.
import { describe, it, expect, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { RoFormerV2, tensor } from '../lib/index.js';
import { PytorchBinError, parsePytorchBin, readPytorchBin } from '../lib/model/pytorch-bin.js';
import { readSafetensors, writeSafetensorsAtomic, type SafetensorsEntry } from '../lib/model/safetensors.js';
import { TorchPickleError, unpickleStateDict } from '../lib/model/torch-pickle.js';

const exec = promisify(execFile);
const CLI = 'dist/lib/cli.js';
const FIXTURES = 'test/fixtures/pytorch-bin';
const GOOD = ['fp32-tied', 'fp16-bare', 'bf16', 'views'];

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'pytorch-bin-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

interface ReferenceTensor {
  dtype: string;
  shape: number[];
  values: number[];
}

/** reference.txt: `name dtype [d0,d1] v0 v1 …` per line, as make.py wrote it. */
function readReference(dir: string): Map<string, ReferenceTensor> {
  const lines = fs.readFileSync(path.join(FIXTURES, dir, 'reference.txt'), 'utf8').trimEnd().split('\n');
  return new Map(
    lines.map((line) => {
      const [name, dtype, shape, ...values] = line.split(' ');
      return [name!, { dtype: dtype!, shape: JSON.parse(shape!) as number[], values: values.map(Number) }];
    }),
  );
}

/** IEEE half-precision bits → number. */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** An entry's little-endian bytes as numbers, decoded here rather than by the addon. */
function decode(entry: SafetensorsEntry): number[] {
  const data = Buffer.from(entry.data);
  const count = data.length / (entry.dtype === 'F32' ? 4 : 2);
  return Array.from({ length: count }, (_, i) => {
    if (entry.dtype === 'F32') return data.readFloatLE(4 * i);
    if (entry.dtype === 'F16') return halfToNumber(data.readUInt16LE(2 * i));
    if (entry.dtype === 'BF16') return new Float32Array(new Uint32Array([data.readUInt16LE(2 * i) << 16]).buffer)[0]!;
    throw new Error(`unexpected dtype ${entry.dtype}`);
  });
}

const TORCH_DTYPES: Record<string, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** A model dir holding the reference's weights as model.safetensors (F32: every value is exact in it). */
async function safetensorsTwin(fixture: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(tmpRoot, `${fixture}-safetensors-`));
  fs.copyFileSync(path.join(FIXTURES, fixture, 'config.json'), path.join(dir, 'config.json'));
  const tensors = [...readReference(fixture)].map(([name, ref]) => ({
    name,
    dtype: 'F32' as const,
    shape: ref.shape,
    data: Buffer.from(new Float32Array(ref.values).buffer),
  }));
  await writeSafetensorsAtomic(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

const INPUT_IDS = [
  [2, 7, 11, 4, 3],
  [2, 23, 5, 19, 3],
];

/** Hidden states and MLM logits of a loaded model on INPUT_IDS. */
async function outputs(dir: string): Promise<{ hidden: Float32Array; logits: Float32Array }> {
  const model = await RoFormerV2.fromPretrained(dir);
  const hidden = await model.forward(tensor(INPUT_IDS, undefined, 'int64'));
  const logits = await model.mlmLogits(hidden, tensor([3, 8], undefined, 'int64'));
  const result = { hidden: hidden.toArray() as Float32Array, logits: logits.toArray() as Float32Array };
  [hidden, logits].forEach((t) => t.dispose());
  model.dispose();
  return result;
}

describe('reading the tensors torch.save wrote', () => {
  for (const fixture of GOOD) {
    it(`${fixture}: every tensor has Python's name, dtype, shape and values`, async () => {
      const reference = readReference(fixture);
      const tensors = await readPytorchBin(path.join(FIXTURES, fixture, 'pytorch_model.bin'));
      expect([...tensors.keys()]).toEqual([...reference.keys()]);
      for (const [name, ref] of reference) {
        const entry = tensors.get(name)!;
        expect(entry.dtype, name).toBe(TORCH_DTYPES[ref.dtype]);
        expect(entry.shape, name).toEqual(ref.shape);
        expect(decode(entry), name).toEqual(ref.values);
      }
    });
  }

  it('bf16 holds a Parameter (torch._utils._rebuild_parameter), read as its tensor above', () => {
    expect(fs.readFileSync(path.join(FIXTURES, 'bf16', 'pytorch_model.bin')).includes('_rebuild_parameter')).toBe(true);
  });

  it('a decoder saved tied to the word embeddings (one shared storage) reads as the same values', async () => {
    const tensors = await readPytorchBin(path.join(FIXTURES, 'fp32-tied', 'pytorch_model.bin'));
    const decoder = tensors.get('cls.predictions.decoder.weight')!;
    const embeddings = tensors.get('roformer.embeddings.word_embeddings.weight')!;
    expect(decoder.shape).toEqual([24, 8]);
    expect(decoder.data.equals(embeddings.data)).toBe(true);
  });
});

describe('a model dir with only pytorch_model.bin', () => {
  for (const fixture of GOOD) {
    it(`${fixture}: loads and computes what the same weights in model.safetensors compute`, async () => {
      const fromBin = await outputs(path.join(FIXTURES, fixture));
      const fromSafetensors = await outputs(await safetensorsTwin(fixture));
      expect(fromBin.hidden.length).toBe(2 * 5 * 8);
      expect(fromBin.logits.length).toBe(2 * 24);
      expect(fromBin.hidden.every(Number.isFinite)).toBe(true);
      expect(fromBin.hidden).toEqual(fromSafetensors.hidden);
      expect(fromBin.logits).toEqual(fromSafetensors.logits);
    });
  }

  it('roformer fill-mask reads it', async () => {
    const { stdout } = await exec(process.execPath, [CLI, 'fill-mask', '--model', path.join(FIXTURES, 'fp32-tied'), '--json', 'a [MASK] b']);
    const { predictions } = JSON.parse(stdout) as { predictions: Array<{ candidates: Array<{ probability: number }> }> };
    expect(predictions).toHaveLength(1);
    expect(predictions[0]!.candidates).toHaveLength(5);
  });

  it('a tensor of the wrong shape or an unknown one is reported as for model.safetensors', async () => {
    const dir = fs.mkdtempSync(path.join(tmpRoot, 'mismatch-'));
    fs.copyFileSync(path.join(FIXTURES, 'bf16', 'pytorch_model.bin'), path.join(dir, 'pytorch_model.bin'));
    const config = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'bf16', 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 1, intermediate_size: 12 }));
    const message = ((await RoFormerV2.fromPretrained(dir).catch((e: unknown) => e)) as Error).message;
    expect(message).toContain(`${path.join(dir, 'pytorch_model.bin')}: does not match ${path.join(dir, 'config.json')}`);
    expect(message).toContain('unexpected tensor roformer.encoder.layer.1.attention.self.query.weight [8,8]');
    expect(message).toContain('tensor roformer.encoder.layer.0.intermediate.dense.weight has shape [16,8], expected [12,8]');
  });
});

describe('roformer convert', () => {
  it('writes config.json, vocab.txt and model.safetensors that load as the same model', async () => {
    const fixture = path.join(FIXTURES, 'fp16-bare');
    const out = path.join(tmpRoot, 'converted');
    const { stdout } = await exec(process.execPath, [CLI, 'convert', fixture, '--out', out]);
    expect(stdout).toContain(`wrote ${out}: config.json, model.safetensors, vocab.txt`);
    expect(fs.readFileSync(path.join(out, 'vocab.txt'), 'utf8')).toBe(fs.readFileSync(path.join(fixture, 'vocab.txt'), 'utf8'));
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ vocab_size: 24, hidden_size: 8, num_hidden_layers: 2 });

    // The safetensors holds Python's values under the prefixed names, in half precision as saved.
    const written = (await readSafetensors(path.join(out, 'model.safetensors'))).tensors;
    for (const [name, ref] of readReference('fp16-bare')) {
      const entry = written.get(`roformer.${name}`)!;
      expect(entry.dtype, name).toBe('F16');
      expect(decode(entry), name).toEqual(ref.values);
    }
    expect(written.has('cls.predictions.decoder.weight')).toBe(true);
    expect(await outputs(out)).toEqual(await outputs(fixture));
  });
});

describe('malformed pytorch_model.bin', () => {
  /** A model dir with the fixture config and this file as its pytorch_model.bin. */
  function dirWith(file: string): { dir: string; bin: string } {
    const dir = fs.mkdtempSync(path.join(tmpRoot, 'malformed-'));
    fs.copyFileSync(path.join(FIXTURES, 'fp32-tied', 'config.json'), path.join(dir, 'config.json'));
    fs.copyFileSync(path.join(FIXTURES, 'fp32-tied', 'vocab.txt'), path.join(dir, 'vocab.txt'));
    const bin = path.join(dir, 'pytorch_model.bin');
    fs.copyFileSync(path.join(FIXTURES, 'malformed', file), bin);
    return { dir, bin };
  }
  const cases: Array<[file: string, error: typeof Error, problem: string]> = [
    ['truncated.bin', PytorchBinError, 'is not a readable zip archive (invalid zip data): truncated or corrupt'],
    ['os-system.bin', TorchPickleError, 'refuses to load the global os.system (only tensors and dicts are read)'],
    [
      'short-storage.bin',
      PytorchBinError,
      'tensor roformer.embeddings.word_embeddings.weight [24,8] ends at element 191 of storage 0, which holds 10 elements ' +
        '(the pickle declares 192): the storage is shorter than its tensor',
    ],
  ];
  for (const [file, errorClass, problem] of cases) {
    it(`${file}: fromPretrained rejects it naming the file and the problem`, async () => {
      const { dir, bin } = dirWith(file);
      const error = await RoFormerV2.fromPretrained(dir).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(errorClass);
      expect((error as Error).message).toBe(`${bin}: ${problem}`);
    });

    it(`${file}: the CLI exits 1 with the error on stderr, no crash`, async () => {
      const { dir, bin } = dirWith(file);
      const result = await exec(process.execPath, [CLI, 'convert', dir, '--out', path.join(dir, 'out')]).catch((e: unknown) => e);
      expect(result).toMatchObject({ code: 1, signal: null, stderr: `roformer: ${bin}: ${problem}\n` });
      expect(fs.existsSync(path.join(dir, 'out', 'model.safetensors'))).toBe(false);
    });
  }

  it('a legacy (pre-zip) torch.save file or plain text is named as such', () => {
    expect(() => parsePytorchBin(Buffer.from([0x80, 0x02, 0x8a, 0x0a]), 'old.bin')).toThrow(
      /^old\.bin: is in the legacy torch\.save format \(before PyTorch 1\.6\), which is not read/,
    );
    expect(() => parsePytorchBin(Buffer.from('hello'), 'text.bin')).toThrow(/^text\.bin: is not a zip archive/);
  });
});

describe('the restricted unpickler', () => {
  const PROTO2 = [0x80, 0x02];
  const unpickle = (bytes: number[]) => () => unpickleStateDict(Uint8Array.from(bytes), 'x.pkl');
  const ascii = (text: string) => [...Buffer.from(text, 'latin1')];

  it('refuses a global named by STACK_GLOBAL before calling anything', () => {
    // SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE 'eval', STACK_GLOBAL
    const bytes = [...PROTO2, 0x8c, 8, ...ascii('builtins'), 0x8c, 4, ...ascii('eval'), 0x93, 0x2e];
    expect(unpickle(bytes)).toThrow(new TorchPickleError('x.pkl: refuses to load the global builtins.eval (only tensors and dicts are read)'));
  });

  it('refuses opcodes that create instances', () => {
    // MARK, INST 'collections OrderedDict'
    const bytes = [...PROTO2, 0x28, 0x69, ...ascii('collections\nOrderedDict\n'), 0x2e];
    expect(unpickle(bytes)).toThrow(/^x\.pkl: opcode 0x69 at byte 3 is not read \(a state dict does not use it\)$/);
  });

  it('refuses calling a storage type, and a persistent id that is not a storage', () => {
    // GLOBAL torch FloatStorage, EMPTY_TUPLE, REDUCE
    expect(unpickle([...PROTO2, 0x63, ...ascii('torch\nFloatStorage\n'), 0x29, 0x52, 0x2e])).toThrow(
      /REDUCE calls torch\.FloatStorage, which a state dict only names as a storage type/,
    );
    // SHORT_BINUNICODE 'x', TUPLE1, BINPERSID
    expect(unpickle([...PROTO2, 0x8c, 1, ...ascii('x'), 0x85, 0x51, 0x2e])).toThrow(/a persistent id that is not \('storage'/);
  });

  it('names a pickle that ends early', () => {
    expect(unpickle([...PROTO2, 0x7d, 0x58, 9, 0, 0, 0])).toThrow(/^x\.pkl: the pickle data\.pkl ends early/);
  });

  it('reads plain values: dicts, lists, ints, floats, strings, booleans, None', () => {
    // EMPTY_DICT, MARK, 'a' BININT1 7, 'b' BINFLOAT 1.5, 'c' EMPTY_LIST MARK NEWTRUE NONE LONG1(-2) APPENDS, SETITEMS, STOP
    const float = [...Buffer.from(new Float64Array([1.5]).buffer)].reverse();
    const bytes = [
      ...PROTO2, 0x7d, 0x28,
      0x8c, 1, ...ascii('a'), 0x4b, 7,
      0x8c, 1, ...ascii('b'), 0x47, ...float,
      0x8c, 1, ...ascii('c'), 0x5d, 0x28, 0x88, 0x4e, 0x8a, 1, 0xfe, 0x65,
      0x75, 0x2e,
    ];
    expect(unpickle(bytes)()).toEqual(new Map<unknown, unknown>([['a', 7], ['b', 1.5], ['c', [true, null, -2]]]));
  });
});
