// Bad input of every kind gives a clear JS Error that names the problem, never a
// crash, and the model that saw it keeps working (same outputs as before).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  ConfigError,
  ModelDirError,
  RoFormerV2,
  runtimeInfo,
  tensor,
  tensorFromBytes,
  type DType,
  type RoFormerV2Config,
  type Tensor,
} from '../lib/index.js';
import { readSafetensors, writeSafetensorsAtomic, SafetensorsError, type SafetensorsTensorInput } from '../lib/model/safetensors.js';

const tiny: Partial<RoFormerV2Config> = {
  vocab_size: 60,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 32,
};

const ids = (rows: number[][], dtype: DType = 'int64'): Tensor => tensor(rows, undefined, dtype);
const GOOD_IDS = [
  [2, 7, 11, 3],
  [2, 40, 59, 3],
];

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'roformer-bad-input-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** An evaluation-mode tiny model and its hidden states for GOOD_IDS before anything bad happened. */
async function freshModel(): Promise<{ model: RoFormerV2; reference: Float32Array }> {
  const model = RoFormerV2.create({ config: tiny, seed: 1 }).eval();
  const hidden = await model.forward(ids(GOOD_IDS));
  const reference = hidden.toArray() as Float32Array;
  hidden.dispose();
  return { model, reference };
}

/** The good forward at the end of each group: it runs and gives exactly what it gave before. */
async function expectStillWorks(model: RoFormerV2, reference: Float32Array): Promise<void> {
  const hidden = await model.forward(ids(GOOD_IDS));
  expect(hidden.shape).toEqual([2, 4, 16]);
  expect(hidden.dtype).toBe('float32');
  const values = hidden.toArray() as Float32Array;
  expect(values.every(Number.isFinite)).toBe(true);
  expect(values).toEqual(reference);
  const logits = await model.mlmLogits(hidden, tensor([0, 5], undefined, 'int64'));
  expect(logits.shape).toEqual([2, 60]);
}

/** Runs fn and returns the Error it throws synchronously (failing if it does not throw one). */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  throw new Error('expected an Error, but nothing was thrown');
}

describe('forward: bad token ids and shapes', () => {
  let model: RoFormerV2;
  let reference: Float32Array;
  beforeAll(async () => ({ model, reference } = await freshModel()));

  it('an id ≥ vocab_size names the id and vocab_size', async () => {
    await expect(model.forward(ids([[1, 2, 60]]))).rejects.toThrow(/input_ids contains the id 60, but vocab_size is 60/);
    await expect(model.forward(ids([[1, 1000, 3]], 'int32'))).rejects.toThrow(/id 1000.*vocab_size is 60/);
  });

  it('a negative id names the id', async () => {
    await expect(model.forward(ids([[1, -2, 6]]))).rejects.toThrow(/input_ids contains the negative id -2/);
    await expect(model.forward(ids([[-1]], 'int32'))).rejects.toThrow(/negative id -1/);
  });

  it('float input_ids are refused, naming the dtype requirement', async () => {
    await expect(model.forward(tensor([[1, 2, 6]]))).rejects.toThrow(/input_ids must be an int32 or int64 tensor/);
    await expect(model.forward(tensor([[1, 2, 6]], undefined, 'float64'))).rejects.toThrow(/input_ids must be an int32 or int64/);
  });

  it('1-D and 3-D input_ids are refused, naming the expected (batch, seq) and the given shape', async () => {
    await expect(model.forward(tensor([1, 2, 6], undefined, 'int64'))).rejects.toThrow(
      /input_ids must have shape \(batch, seq\), got \[3\]/,
    );
    await expect(model.forward(tensor([[[1, 2, 6]]], undefined, 'int64'))).rejects.toThrow(
      /input_ids must have shape \(batch, seq\), got \[1, 1, 3\]/,
    );
  });

  it('token_type_ids of another shape names both shapes', async () => {
    await expect(model.forward(ids([[1, 2, 6]]), { tokenTypeIds: ids([[0, 1]]) })).rejects.toThrow(
      /token_type_ids has shape \[1, 2\] but input_ids has shape \[1, 3\]/,
    );
  });

  it('a token type id ≥ type_vocab_size names the id and type_vocab_size', async () => {
    await expect(model.forward(ids([[1, 2, 6]]), { tokenTypeIds: ids([[0, 1, 2]]) })).rejects.toThrow(
      /token_type_ids contains the id 2, but type_vocab_size is 2/,
    );
    await expect(model.forward(ids([[1, 2, 6]]), { tokenTypeIds: ids([[0, -1, 0]]) })).rejects.toThrow(
      /token_type_ids contains the negative id -1/,
    );
  });

  it('float token_type_ids are refused', async () => {
    await expect(model.forward(ids([[1, 2, 6]]), { tokenTypeIds: tensor([[0, 0, 0]]) })).rejects.toThrow(
      /token_type_ids must be an int32 or int64 tensor/,
    );
  });

  it('attention_mask of another shape names both shapes', async () => {
    await expect(model.forward(ids([[1, 2, 6]]), { attentionMask: ids([[1, 1]]) })).rejects.toThrow(
      /attention_mask has shape \[1, 2\] but input_ids has shape \[1, 3\]/,
    );
    await expect(model.forward(ids([[1, 2, 6]]), { attentionMask: ids([[1], [1], [1]]) })).rejects.toThrow(
      /attention_mask has shape \[3, 1\]/,
    );
  });

  it('an empty batch (shape [0, 5]) and an empty sequence are refused as empty', async () => {
    await expect(model.forward(tensor(new BigInt64Array(0), [0, 5]))).rejects.toThrow(/input_ids is empty: shape \[0, 5\]/);
    await expect(model.forward(tensor(new Int32Array(0), [2, 0]))).rejects.toThrow(/input_ids is empty: shape \[2, 0\]/);
  });

  it('mlmLogits: a position ≥ batch*seq, a negative one, 2-D positions and a wrong hidden size are refused', async () => {
    const hidden = await model.forward(ids(GOOD_IDS)); // batch*seq = 8
    await expect(model.mlmLogits(hidden, tensor([0, 8], undefined, 'int64'))).rejects.toThrow(
      /positions contains the id 8, but batch\*seq is 8/,
    );
    await expect(model.mlmLogits(hidden, tensor([-1], undefined, 'int64'))).rejects.toThrow(/positions contains the negative id -1/);
    await expect(model.mlmLogits(hidden, tensor([[1]], undefined, 'int64'))).rejects.toThrow(/positions must be 1-D/);
    await expect(model.mlmLogits(hidden, tensor([1]))).rejects.toThrow(/positions must be an int32 or int64 tensor/);
    await expect(model.mlmLogits(tensor(new Float32Array(8), [1, 8]))).rejects.toThrow(/hidden must have shape \(\.\.\., 16\), got \[1, 8\]/);
    const all = await model.mlmLogits(hidden);
    expect(all.shape).toEqual([8, 60]);
  });

  it('afterwards the same model still works and gives the same output', async () => {
    await expectStillWorks(model, reference);
  });
});

describe('wrong JS argument types', () => {
  let model: RoFormerV2;
  let reference: Float32Array;
  beforeAll(async () => ({ model, reference } = await freshModel()));

  it('a string or a plain object where a Tensor is expected is a TypeError naming the argument', () => {
    expect(() => model.native.forward('x' as never, null, null)).toThrow(TypeError);
    expect(() => model.native.forward('x' as never, null, null)).toThrow(/input_ids must be a Tensor, got x/);
    expect(() => model.native.forward({ shape: [1, 3] } as never, null, null)).toThrow(/input_ids must be a Tensor, got an object/);
    expect(() => model.native.forward(undefined as never, null, null)).toThrow(/input_ids must be a Tensor/);
    const good = ids([[1, 2]]);
    expect(() => model.native.forward(good, 5 as never, null)).toThrow(/token_type_ids must be a Tensor/);
    expect(() => model.native.forward(good, null, [1, 1] as never)).toThrow(/attention_mask must be a Tensor/);
    expect(() => model.native.mlmLogits(new Float32Array(16) as never, null)).toThrow(/hidden must be a Tensor/);
    expect(() => model.native.loadStateDict(null as never)).toThrow(/loadStateDict\(state\) must be an object/);
    expect(() => model.native.loadStateDict({ 'word_embeddings.weight': 5 } as never)).toThrow(
      /state\['word_embeddings.weight'\] must be a Tensor, got 5/,
    );
  });

  it('model.mlmLogits with a string rejects with the native TypeError', async () => {
    await expect(model.mlmLogits('x' as never)).rejects.toThrow(TypeError);
    await expect(model.mlmLogits('x' as never)).rejects.toThrow(/hidden must be a Tensor, got x/);
  });

  it('model.forward (the public wrapper) with a string or a plain object rejects naming input_ids', async () => {
    await expect(model.forward('x' as never)).rejects.toThrow(/input_ids must be a Tensor/);
    await expect(model.forward({ shape: [1, 3] } as never)).rejects.toThrow(/input_ids must be a Tensor/);
    await expect(model.forward(ids([[1, 2]]), { tokenTypeIds: 'x' as never })).rejects.toThrow(/token_type_ids must be a Tensor/);
  });

  it('a TypedArray whose length does not match the shape is a RangeError giving both counts', () => {
    const error = thrown(() => tensor(new Float32Array(3), [2, 2]));
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toMatch(/data has 3 elements but shape \[2, 2\] needs 4/);
  });

  it('a shape with -1 or 1.5 names the bad dimension', () => {
    expect(() => tensor(new Float32Array(4), [-1, 4])).toThrow(TypeError);
    expect(() => tensor(new Float32Array(4), [-1, 4])).toThrow(/shape\[0\] must be a non-negative integer, got -1/);
    expect(() => tensor(new Float32Array(4), [4, 1.5])).toThrow(/shape\[1\] must be a non-negative integer, got 1.5/);
    expect(() => tensor(new Float32Array(4), [NaN])).toThrow(/shape\[0\] must be a non-negative integer/);
    expect(() => tensor(new Float32Array(4), ['4'] as never)).toThrow(/shape\[0\] must be a non-negative integer/);
    expect(() => tensor(new Float32Array(4), 4 as never)).toThrow(/shape must be an array/);
  });

  it('tensorFromBytes checks the byte count before allocating: a huge shape with 4 bytes names the mismatch', () => {
    expect(() => tensorFromBytes(new Uint8Array(4), [1e12], 'float32')).toThrow(RangeError);
    expect(() => tensorFromBytes(new Uint8Array(4), [1e12], 'float32')).toThrow(/4 bytes given/);
  });

  it('an impossibly large shape is an Error, not a crash', () => {
    expect(() => tensor(new Float32Array(0), [2 ** 32, 2 ** 32])).toThrow(Error);
    expect(() => tensor(new Float32Array(4), [1e20])).toThrow(/shape\[0\] must be a non-negative integer/);
  });

  it('an unknown dtype string lists the known ones; a non-string dtype is a TypeError', () => {
    expect(() => tensor(new Float32Array(4), [4], 'float128' as DType)).toThrow(
      /unknown dtype 'float128': use float32, float64, float16, bfloat16/,
    );
    expect(() => tensor([1, 2], undefined, 'half' as DType)).toThrow(/unknown dtype 'half'/);
    expect(() => tensor(new Float32Array(4), [4], 32 as never)).toThrow(/dtype must be a string/);
    const t = tensor(new Float32Array(4), [4]);
    expect(() => t.to(undefined, 'complex64' as DType)).toThrow(/unknown dtype 'complex64'/);
    expect(() => t.to(5 as never)).toThrow(/device must be a string/);
  });

  it('a non-TypedArray to the native constructor is a TypeError', () => {
    expect(() => tensor(new DataView(new ArrayBuffer(4)) as never, [1])).toThrow(/data must be a TypedArray/);
  });

  it('a disposed input tensor passed to forward is an Error mentioning disposed', async () => {
    const gone = ids([[1, 2, 6]]);
    gone.dispose();
    await expect(model.forward(gone)).rejects.toThrow(/disposed/);
    expect(() => model.native.forward(gone, null, null)).toThrow(/input_ids is a Tensor that was disposed/);
    const types = ids([[0, 0, 0]]);
    types.dispose();
    await expect(model.forward(ids([[1, 2, 6]]), { tokenTypeIds: types })).rejects.toThrow(/disposed/);
    const hidden = await model.forward(ids([[1, 2, 6]]));
    hidden.dispose();
    await expect(model.mlmLogits(hidden)).rejects.toThrow(/hidden is a Tensor that was disposed/);
  });

  it('disposing an input while its forward is running is safe', async () => {
    const input = ids(GOOD_IDS);
    const pending = model.forward(input);
    input.dispose();
    const hidden = await pending;
    expect(hidden.toArray()).toEqual(reference);
  });

  it('afterwards the same model still works and gives the same output', async () => {
    await expectStillWorks(model, reference);
  });
});

describe('devices', () => {
  let model: RoFormerV2;
  let reference: Float32Array;
  beforeAll(async () => ({ model, reference } = await freshModel()));

  it("'cuda' on a machine without CUDA says CUDA is not available (model and tensor)", () => {
    if (runtimeInfo().cudaAvailable) {
      // With a GPU, ask for a device that cannot exist instead.
      const missing = `cuda:${runtimeInfo().cudaDeviceCount}`;
      expect(() => model.to(missing)).toThrow(/does not exist/);
      expect(() => tensor([1], undefined).to(missing)).toThrow(/does not exist/);
    } else {
      expect(() => model.to('cuda')).toThrow(/device 'cuda' was requested, but CUDA is not available/);
      expect(() => model.to('cuda:0', 'float16')).toThrow(/CUDA is not available/);
      expect(() => tensor([1]).to('cuda')).toThrow(/CUDA is not available/);
      expect(() => tensor([1]).to('cuda:1')).toThrow(/CUDA is not available/);
      expect(() => RoFormerV2.create({ config: tiny, device: 'cuda' })).toThrow(/CUDA is not available/);
    }
    expect(model.device).toBe('cpu');
  });

  it("an unknown device 'gpu' lists the valid ones", () => {
    expect(() => model.to('gpu')).toThrow(/unknown device 'gpu': use 'cpu', 'cuda' or 'cuda:N'/);
    expect(() => tensor([1]).to('gpu')).toThrow(/unknown device 'gpu'/);
    expect(model.device).toBe('cpu');
  });

  it('a module cannot be cast to an integer dtype', () => {
    expect(() => model.to('cpu', 'int32')).toThrow(/floating point/);
    expect(() => model.to('cpu', 'nope' as DType)).toThrow(/unknown dtype 'nope'/);
  });

  it('afterwards the same model still works and gives the same output', async () => {
    await expectStillWorks(model, reference);
    for (const p of Object.values(model.namedParameters())) expect(p.dtype).toBe('float32');
  });
});

describe('config problems via RoFormerV2.create', () => {
  const cases: Array<[string, Partial<RoFormerV2Config> | Record<string, unknown>, RegExp]> = [
    ['hidden_size not divisible by heads', { hidden_size: 18, num_attention_heads: 4 }, /hidden_size \(18\) must be divisible by num_attention_heads \(4\)/],
    ['odd head size', { hidden_size: 18, num_attention_heads: 2 }, /head size hidden_size \/ num_attention_heads = 9 must be even/],
    ['vocab_size 0', { vocab_size: 0 }, /vocab_size must be positive, got 0/],
    ['pad_token_id ≥ vocab', { pad_token_id: 60 }, /pad_token_id \(60\) must be in \[0, vocab_size = 60\)/],
    ["hidden_act 'gelu'", { hidden_act: 'gelu' }, /hidden_act is "gelu", but RoFormerV2 uses a ReLU/],
    ['use_bias true', { use_bias: true }, /use_bias is true, but RoFormerV2 has no biases/],
    ['non-integer layers', { num_hidden_layers: 1.5 }, /num_hidden_layers must be an integer, got 1.5/],
    ['string hidden size', { hidden_size: '16' }, /hidden_size must be an integer, got "16"/],
    ['negative heads', { num_attention_heads: -2 }, /num_attention_heads must be positive/],
    ['dropout 1', { hidden_dropout_prob: 1 }, /hidden_dropout_prob must be in \[0, 1\)/],
    ['norm_type layer_norm', { norm_type: 'layer_norm' }, /norm_type is "layer_norm"/],
  ];
  for (const [what, overrides, message] of cases) {
    it(`${what} is a ConfigError naming the key`, () => {
      const error = thrown(() => RoFormerV2.create({ config: { ...tiny, ...overrides } as Partial<RoFormerV2Config> }));
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(message);
    });
  }

  it('an unknown size names it', () => {
    expect(() => RoFormerV2.create({ size: 'huge' as never, config: tiny })).toThrow(/unknown model size 'huge'/);
  });

  it('afterwards a valid config still creates a working model', async () => {
    const { model, reference } = await freshModel();
    await expectStillWorks(model, reference);
  });
});

describe('model dirs', () => {
  let goodDir: string;
  let bigDir: string;
  let model: RoFormerV2;
  let reference: Float32Array;

  const weights = (dir: string) => path.join(dir, 'model.safetensors');
  const config = (dir: string) => path.join(dir, 'config.json');
  /** A copy of the good dir to break. */
  const copyOfGood = (): string => {
    const dir = fs.mkdtempSync(path.join(tmpRoot, 'dir-'));
    fs.cpSync(goodDir, dir, { recursive: true });
    return dir;
  };

  beforeAll(async () => {
    goodDir = fs.mkdtempSync(path.join(tmpRoot, 'good-'));
    await RoFormerV2.create({ config: tiny, seed: 1 }).save(goodDir);
    bigDir = fs.mkdtempSync(path.join(tmpRoot, 'big-'));
    await RoFormerV2.create({ config: { ...tiny, hidden_size: 32 }, seed: 1 }).save(bigDir);
    ({ model, reference } = await freshModel());
  });

  it('the valid dir loads and gives the same hidden states as the model that wrote it', async () => {
    const loaded = await RoFormerV2.fromPretrained(goodDir);
    expect(loaded.training).toBe(false);
    await expectStillWorks(loaded, reference);
  });

  it('a missing dir names the config path', async () => {
    const missing = path.join(tmpRoot, 'no-such-dir');
    const p = RoFormerV2.fromPretrained(missing);
    await expect(p).rejects.toBeInstanceOf(ModelDirError);
    await expect(RoFormerV2.fromPretrained(missing)).rejects.toThrow(
      new RegExp(`${escape(path.join(missing, 'config.json'))}: cannot read the model config.*ENOENT`),
    );
  });

  it('a missing config.json names the file', async () => {
    const dir = copyOfGood();
    fs.rmSync(config(dir));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(new RegExp(`${escape(config(dir))}: cannot read the model config`));
  });

  it('a missing model.safetensors names it (and a lone pytorch_model.bin is read instead)', async () => {
    const dir = copyOfGood();
    fs.rmSync(weights(dir));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(new RegExp(`${escape(weights(dir))}: not found \\(nor pytorch_model.bin\\)`));
    const bin = path.join(dir, 'pytorch_model.bin');
    fs.writeFileSync(bin, 'pickle');
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(new RegExp(`${escape(bin)}: is not a zip archive, so not a torch.save checkpoint`));
  });

  it('config.json with invalid JSON names the file', async () => {
    const dir = copyOfGood();
    fs.writeFileSync(config(dir), '{"vocab_size": 60,');
    const error = await RoFormerV2.fromPretrained(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelDirError);
    expect((error as Error).message).toMatch(new RegExp(`${escape(config(dir))}: invalid JSON`));
    fs.writeFileSync(config(dir), '[1, 2]');
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(new RegExp(`${escape(config(dir))}: must be a JSON object`));
  });

  it('config.json with inconsistent sizes names the file and the keys', async () => {
    const dir = copyOfGood();
    const json = JSON.parse(fs.readFileSync(config(dir), 'utf8'));
    fs.writeFileSync(config(dir), JSON.stringify({ ...json, num_attention_heads: 3 }));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(
      new RegExp(`${escape(config(dir))}: hidden_size \\(16\\) must be divisible by num_attention_heads \\(3\\)`),
    );
    fs.writeFileSync(config(dir), JSON.stringify({ ...json, embedding_size: 32 }));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(/embedding_size \(32\) must equal hidden_size \(16\)/);
  });

  it('a truncated model.safetensors says truncated and names the file', async () => {
    const dir = copyOfGood();
    const bytes = fs.readFileSync(weights(dir));
    fs.writeFileSync(weights(dir), bytes.subarray(0, Math.floor(bytes.length / 2)));
    const error = await RoFormerV2.fromPretrained(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SafetensorsError);
    expect((error as Error).message).toMatch(new RegExp(`^${escape(weights(dir))}: .*truncated`));
    // Cut inside the header too.
    fs.writeFileSync(weights(dir), bytes.subarray(0, 20));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(new RegExp(`${escape(weights(dir))}: truncated`));
  });

  it('garbage bytes instead of safetensors name the file', async () => {
    const dir = copyOfGood();
    fs.writeFileSync(weights(dir), 'this is not a safetensors file, just some text');
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(new RegExp(`${escape(weights(dir))}: (truncated|not a safetensors|header)`));
    fs.writeFileSync(weights(dir), Buffer.from([1, 2, 3]));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(/not a safetensors file: it is only 3 bytes long/);
    // A plausible length prefix followed by non-JSON.
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(6n);
    fs.writeFileSync(weights(dir), Buffer.concat([prefix, Buffer.from('{{{{{{')]));
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(/header is not valid UTF-8 JSON/);
  });

  it('weights of another size list every mis-shaped tensor by its Hugging Face name', async () => {
    const dir = copyOfGood();
    fs.copyFileSync(weights(bigDir), weights(dir));
    const error = await RoFormerV2.fromPretrained(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelDirError);
    const message = (error as Error).message;
    expect(message).toMatch(new RegExp(`${escape(weights(dir))}: does not match ${escape(config(dir))} \\(14 problem\\(s\\)\\)`));
    expect(message).toMatch(/tensor roformer\.encoder\.layer\.0\.attention\.self\.query\.weight has shape \[32,32\], expected \[16,16\]/);
    expect(message).toMatch(/tensor roformer\.embeddings\.word_embeddings\.weight has shape \[60,32\], expected \[60,16\]/);
    expect(message).toMatch(/tensor roformer\.encoder\.layer\.1\.output\.dense\.weight has shape \[32,32\], expected \[16,32\]/);
  });

  it("a removed and an added tensor give 'missing tensor <name>' and 'unexpected tensor <name>'", async () => {
    const dir = copyOfGood();
    const file = await readSafetensors(weights(dir));
    const removed = 'roformer.encoder.layer.1.attention.self.value.weight';
    const tensors: SafetensorsTensorInput[] = [...file.tensors.values()].filter((t) => t.name !== removed);
    tensors.push({ name: 'roformer.pooler.dense.weight', dtype: 'F32', shape: [2], data: Buffer.alloc(8) });
    tensors.push({ name: 'roformer.encoder.layer.2.output.dense.weight', dtype: 'F32', shape: [1], data: Buffer.alloc(4) });
    await writeSafetensorsAtomic(weights(dir), tensors);
    const error = await RoFormerV2.fromPretrained(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelDirError);
    const message = (error as Error).message;
    expect(message).toMatch(/\(3 problem\(s\)\)/);
    expect(message).toMatch(/missing tensor roformer\.encoder\.layer\.1\.attention\.self\.value\.weight/);
    expect(message).toMatch(/unexpected tensor roformer\.pooler\.dense\.weight/);
    expect(message).toMatch(/unexpected tensor roformer\.encoder\.layer\.2\.output\.dense\.weight/);
  });

  it('an integer dtype tensor is named with its dtype', async () => {
    const dir = copyOfGood();
    const file = await readSafetensors(weights(dir));
    const name = 'roformer.embeddings.token_type_embeddings.weight';
    const tensors: SafetensorsTensorInput[] = [...file.tensors.values()].map((t) =>
      t.name === name ? { ...t, dtype: 'I32' as const } : t,
    );
    await writeSafetensorsAtomic(weights(dir), tensors);
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(
      /tensor roformer\.embeddings\.token_type_embeddings\.weight has dtype I32; expected F32, F16, BF16 or F64/,
    );
  });

  it('a cls.predictions.decoder.weight that differs from the word embeddings is refused', async () => {
    const dir = copyOfGood();
    const file = await readSafetensors(weights(dir));
    const tensors: SafetensorsTensorInput[] = [...file.tensors.values()].map((t) => {
      if (t.name !== 'cls.predictions.decoder.weight') return t;
      const data = Buffer.from(t.data); // a copy, so the embeddings stay as they are
      data.writeFloatLE(data.readFloatLE(0) + 1, 0);
      return { ...t, data };
    });
    await writeSafetensorsAtomic(weights(dir), tensors);
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(
      /tensor cls\.predictions\.decoder\.weight differs from roformer\.embeddings\.word_embeddings\.weight, but RoFormerV2 ties them/,
    );
    // A decoder of the wrong shape is named with both shapes.
    const shaped = tensors.map((t) =>
      t.name === 'cls.predictions.decoder.weight' ? { ...t, shape: [16, 60] } : t,
    );
    await writeSafetensorsAtomic(weights(dir), shaped);
    await expect(RoFormerV2.fromPretrained(dir)).rejects.toThrow(
      /tensor cls\.predictions\.decoder\.weight has shape \[16,60\], expected \[60,16\] \(tied to the word embeddings\)/,
    );
  });

  it('loadStateDict({}) lists every missing tensor', () => {
    const error = thrown(() => model.loadStateDict({}));
    expect(error.message).toMatch(/loadStateDict: 14 problem\(s\)/);
    for (const name of Object.keys(model.namedParameters())) {
      expect(error.message).toContain(`missing tensor ${name}`);
    }
    expect(error.message).toContain('missing tensor layer.0.attention.query.weight');
  });

  it('loadStateDict with a wrong-shaped tensor names it and both shapes; with an extra one names that', () => {
    const state = { ...model.namedParameters() };
    state['layer.1.intermediate.weight'] = tensor(new Float32Array(16 * 16), [16, 16]);
    expect(() => model.loadStateDict(state)).toThrow(
      /loadStateDict: 1 problem\(s\):\n {2}- tensor layer\.1\.intermediate\.weight has shape \[16, 16\] but the model expects \[32, 16\]/,
    );
    const extra = { ...model.namedParameters(), 'layer.2.output.weight': tensor(new Float32Array(1), [1]) };
    expect(() => model.loadStateDict(extra)).toThrow(/unexpected tensor layer\.2\.output\.weight/);
    const ints = { ...model.namedParameters(), 'word_embeddings.weight': tensor(new Int32Array(60 * 16), [60, 16]) };
    expect(() => model.loadStateDict(ints)).toThrow(/tensor word_embeddings\.weight has dtype int32 but the model expects floating point/);
  });

  it('a refused loadStateDict changes no weight: the model still works and gives the same output', async () => {
    // A state where every tensor but one is valid (zeros): nothing may be copied.
    const state: Record<string, Tensor> = {};
    for (const [name, p] of Object.entries(model.namedParameters())) state[name] = tensor(new Float32Array(p.numel), p.shape);
    state['word_embeddings.weight'] = tensor(new Float32Array(61 * 16), [61, 16]);
    expect(() => model.loadStateDict(state)).toThrow(/word_embeddings\.weight has shape \[61, 16\]/);
    await expectStillWorks(model, reference);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
