// The fused kernels' arithmetic (native/kernels/fused_rows.h), through its CPU instantiation,
// against libtorch's autograd in float64: values and gradients of the post-norm residual, RoPE
// on q and k (strided slices of a packed projection) and embedding + RMS norm, with and without
// dropout; the dropout mask is regenerated from its seed (same seed, same mask; another seed,
// another mask; the kept fraction near 1 − p). The same comparison runs on the GPU in
// bench/gpu/fused-check.mjs. Also the prepared GPU check's CPU-side behaviour.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadNative } from '../bindings/load.js';

const native = loadNative();
const kernels = ['residual_rms_norm', 'rotary', 'embedding_rms_norm', 'dropout', 'softmax_dropout'] as const;

describe('fused kernels, CPU instantiation in float64 against autograd', () => {
  for (const kernel of kernels) {
    for (const p of kernel === 'rotary' ? [0] : [0, 0.1, 0.5]) {
      it(`${kernel}${p ? `, dropout ${p}` : ''}: values and gradients`, () => {
        const r = native.fusedKernelCheck({ kernel, device: 'cpu', dtype: 'float64', p, seed: 99, batch: 3, seq: 24, hidden: 64, heads: 4 });
        expect(r.limit).toBe(1e-12);
        expect(r.valueError).toBeLessThan(1e-12);
        expect(r.gradientError).toBeLessThan(1e-12);
        expect(r.ok).toBe(true);
        if (kernel !== 'rotary') expect(Math.abs(r.keptFraction - (1 - p))).toBeLessThan(0.05);
      });
    }
  }

  it('bf16 storage with float math (the residual stream, q and k, attention weights under bf16 autocast) within bf16 rounding', () => {
    for (const p of [0, 0.1]) {
      // the residual norm with x and f in bf16; the embedding norm from fp32 tables into a bf16 output; RoPE on bf16 q and k
      const residual = native.fusedKernelCheck({ kernel: 'residual_rms_norm', device: 'cpu', dtype: 'bfloat16', xDtype: 'bfloat16', p, seed: 9, batch: 3, seq: 24, hidden: 64 });
      const embedding = native.fusedKernelCheck({ kernel: 'embedding_rms_norm', device: 'cpu', dtype: 'float32', xDtype: 'bfloat16', p, seed: 9, batch: 3, seq: 24, hidden: 64 });
      const rotary = native.fusedKernelCheck({ kernel: 'rotary', device: 'cpu', dtype: 'bfloat16', p: 0, seed: 9, batch: 3, seq: 24, hidden: 64, heads: 4 });
      const dropout = native.fusedKernelCheck({ kernel: 'dropout', device: 'cpu', dtype: 'bfloat16', p, seed: 9, batch: 3, seq: 24, hidden: 64 });
      // attention's softmax + dropout on bf16 scores (the vectorised bf16 rows)
      const softmax = native.fusedKernelCheck({ kernel: 'softmax_dropout', device: 'cpu', dtype: 'bfloat16', p, seed: 9, batch: 3, seq: 24, hidden: 64 });
      for (const r of [residual, embedding, rotary, dropout, softmax]) {
        // bf16 keeps 8 bits: one rounding of each input and output is ~2e-3 relative. Softmax's
        // gradient, d⊙dd − p·Σ(d⊙dd), rounds three factors (d, dd, p) and the result, and its
        // difference cancels: 3.1e-3 median, 5.2e-3 the largest over 800 random inputs
        expect(r.valueError).toBeLessThan(4e-3);
        expect(r.gradientError).toBeLessThan(r === softmax ? 8e-3 : 4e-3);
        if (r !== rotary) expect(Math.abs(r.keptFraction - (1 - p))).toBeLessThan(0.05);
      }
    }
    // bf16 out of float64 tables: the CPU instantiation has no such combination, and says so
    expect(() => native.fusedKernelCheck({ kernel: 'embedding_rms_norm', device: 'cpu', dtype: 'float64', xDtype: 'bfloat16' })).toThrow(/does not take these tables/);
  });

  it('float32 within float32 rounding', () => {
    for (const kernel of kernels) {
      const r = native.fusedKernelCheck({ kernel, device: 'cpu', dtype: 'float32', p: 0.1, seed: 5, batch: 2, seq: 32, hidden: 128, heads: 2 });
      expect(r.valueError, kernel).toBeLessThan(1e-5);
      expect(r.gradientError, kernel).toBeLessThan(1e-5);
    }
  });

  it('RoPE reads q, k and their gradients in place through any strides (attention\'s (batch, heads, seq, head_dim) layout)', () => {
    for (const dtype of ['float64', 'bfloat16'] as const) {
      const r = native.fusedKernelCheck({ kernel: 'rotary', device: 'cpu', dtype, p: 0, batch: 2, seq: 20, hidden: 48, heads: 3, headsFirst: true });
      expect(r.valueError, dtype).toBeLessThan(dtype === 'float64' ? 1e-12 : 4e-3);
      expect(r.gradientError, dtype).toBeLessThan(dtype === 'float64' ? 1e-12 : 4e-3);
    }
  });

  it('dropout: the mask of a tensor bigger than one block of drawn flags (256 groups) and split among threads is keep4\'s', () => {
    // 6 × 4096 elements: 6,144 groups, parallel_for chunks of 4,096 groups, blocks of 256 inside
    const r = native.fusedKernelCheck({ kernel: 'dropout', device: 'cpu', dtype: 'float64', p: 0.3, seed: 11, batch: 2, seq: 3, hidden: 4096 });
    expect(r.valueError).toBeLessThan(1e-12);
    expect(r.gradientError).toBeLessThan(1e-12);
    expect(Math.abs(r.keptFraction - 0.7)).toBeLessThan(0.02);
  });

  it('attention\'s batched products (one product per thread, operands read through their strides): values and gradients', () => {
    // q, k and v as (batch, heads, seq, head_dim) views of (batch, seq, heads, head_dim), the output
    // joined back by a view; float64 runs BLAS's dgemm, float32 its sgemm, each against float64 matmul
    for (const [batch, seq, hidden, heads] of [[2, 24, 64, 4], [3, 7, 30, 3], [1, 130, 128, 2]]) {
      const r64 = native.fusedKernelCheck({ kernel: 'batched_matmul', device: 'cpu', dtype: 'float64', batch, seq, hidden, heads });
      expect(r64.valueError, `${seq}`).toBeLessThan(1e-12);
      expect(r64.gradientError, `${seq}`).toBeLessThan(1e-12);
      const r32 = native.fusedKernelCheck({ kernel: 'batched_matmul', device: 'cpu', dtype: 'float32', batch, seq, hidden, heads });
      expect(r32.valueError, `${seq}`).toBeLessThan(1e-5);
      expect(r32.gradientError, `${seq}`).toBeLessThan(1e-5);
    }
  });

  it('a wider row than one group of lanes, and an odd number of rows', () => {
    const r = native.fusedKernelCheck({ kernel: 'residual_rms_norm', device: 'cpu', dtype: 'float64', p: 0.2, seed: 7, batch: 1, seq: 7, hidden: 1028 });
    expect(r.valueError).toBeLessThan(1e-12);
    expect(r.gradientError).toBeLessThan(1e-12);
  });

  it("the feed-forward's ReLU in place and its backward: exactly libtorch's relu in float64, zeros, infinities and NaN of both signs included", () => {
    // every 7th value is one of 0, −0, ±inf, ±NaN; rows wider than a thread's share (32,768), odd lengths
    for (const dtype of ['float64', 'float32', 'bfloat16'] as const) {
      for (const shape of [{ batch: 2, seq: 3, hidden: 5 }, { batch: 4, seq: 128, hidden: 96 }]) {
        const r = native.fusedKernelCheck({ kernel: 'relu', device: 'cpu', dtype, ...shape });
        expect(r.valueError, `${dtype} ${JSON.stringify(shape)}`).toBe(0);
        expect(r.gradientError, `${dtype} ${JSON.stringify(shape)}`).toBe(0);
        expect(r.ok).toBe(true);
      }
    }
  });

  it('rejects an unknown kernel and a p outside [0, 1), naming them', () => {
    expect(() => native.fusedKernelCheck({ kernel: 'gelu' as never })).toThrow(/kernel must be residual_rms_norm, rotary, embedding_rms_norm, dropout, softmax_dropout, batched_matmul or relu, got 'gelu'/);
    expect(() => native.fusedKernelCheck({ kernel: 'relu', device: 'cuda' })).toThrow(/relu kernel is the CPU's|CUDA/);
    expect(() => native.fusedKernelCheck({ kernel: 'rotary', p: 1 })).toThrow(/p must be in \[0, 1\)/);
  });

  it('reports which fused paths the model takes on the CPU, and no CUDA kernels in a CPU build', () => {
    const info = native.fusedKernels();
    expect(typeof info.cuda).toBe('boolean');
    if (!native.runtimeInfo().cudaAvailable) expect(info.cuda).toBe(false);
    expect(Object.keys(info.usedOnCpu).sort()).toEqual(['dropout', 'embeddingRmsNorm', 'relu', 'residualRmsNorm', 'rotary', 'softmaxDropout']);
    expect(['avx512', 'avx2', 'portable']).toContain(info.cpuDropoutDraw);
  });

  // The keep flags are drawn with AVX-512, AVX2 or plain loops, whichever the CPU has best; each
  // lesser one is forced in a child process (ROFORMER_CPU_DRAW is read once) and must draw keep4's
  // mask too: dropout alone and inside the residual norm, rows wider than a block of flags, several threads.
  const best = native.fusedKernels().cpuDropoutDraw;
  const lesser = best === 'avx512' ? ['avx2', 'portable'] : best === 'avx2' ? ['portable'] : [];
  for (const isa of lesser) {
    it(`the keep flags drawn with ${isa} are keep4's`, () => {
      const script = `
        const { loadNative } = await import('./dist/bindings/load.js');
        const native = loadNative();
        native.setNumThreads(2);
        const checks = [
          native.fusedKernelCheck({ kernel: 'dropout', device: 'cpu', dtype: 'float64', p: 0.3, seed: 11, batch: 2, seq: 3, hidden: 4100 }),
          native.fusedKernelCheck({ kernel: 'residual_rms_norm', device: 'cpu', dtype: 'float64', p: 0.1, seed: 4, batch: 3, seq: 5, hidden: 1028 }),
          native.fusedKernelCheck({ kernel: 'embedding_rms_norm', device: 'cpu', dtype: 'float32', p: 0.5, seed: 8, batch: 2, seq: 9, hidden: 64 }),
        ];
        console.log(JSON.stringify({ isa: native.fusedKernels().cpuDropoutDraw, checks }));`;
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ROFORMER_CPU_DRAW: isa }, encoding: 'utf8' });
      expect(child.status, child.stderr).toBe(0);
      const { isa: used, checks } = JSON.parse(child.stdout) as { isa: string; checks: Array<{ valueError: number; gradientError: number; keptFraction: number }> };
      expect(used).toBe(isa);
      for (const r of checks) {
        expect(r.valueError).toBeLessThan(1e-5);
        expect(r.gradientError).toBeLessThan(1e-5);
      }
      expect(Math.abs(checks[0]!.keptFraction - 0.7)).toBeLessThan(0.02);
    });
  }
});

describe('the model through the fused path', () => {
  // Three fp32 training steps without dropout, in a child process per setting (ROFORMER_FUSED is
  // read once per process): the fused kernels and libtorch's chains give the same losses.
  const losses = (setting: string, precision = 'fp32') => {
    const script = `
      const { RoFormerV2, Trainer, tensor } = await import('./dist/lib/index.js');
      const config = { vocab_size: 80, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
      const trainer = new Trainer(RoFormerV2.create({ config, seed: 3 }), { lr: 1e-2, precision: '${precision}' });
      const ids = Array.from({ length: 4 }, (_, b) => Array.from({ length: 12 }, (_, s) => 5 + ((b * 31 + s * 7) % 70)));
      const out = [];
      for (let i = 0; i < 3; i++) {
        const r = await trainer.step({ inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor([1, 13, 30, 44], undefined, 'int64'), targetIds: tensor([9, 17, 23, 41], undefined, 'int64') });
        out.push(r.loss);
      }
      console.log(JSON.stringify(out));`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ROFORMER_FUSED: setting }, encoding: 'utf8' });
    expect(child.status, child.stderr).toBe(0);
    return JSON.parse(child.stdout) as number[];
  };

  it('gives the losses of libtorch\'s chains (fp32, three steps)', () => {
    const fused = losses('1');
    const chains = losses('0');
    expect(fused[2]).toBeLessThan(fused[0]);
    fused.forEach((loss, i) => expect(Math.abs(loss - chains[i]!)).toBeLessThan(1e-5 * Math.abs(chains[i]!)));
  });

  it('under bf16 autocast (the fused norms keep the residual stream in bf16) trains as the chains do (fp32 stream) within bf16 rounding', () => {
    const fused = losses('1', 'bf16');
    const chains = losses('0', 'bf16');
    const fp32 = losses('0');
    expect(fused[2]).toBeLessThan(fused[0]);
    fused.forEach((loss, i) => expect(Math.abs(loss - chains[i]!)).toBeLessThan(2e-2 * Math.abs(chains[i]!)));
    // both bf16 runs differ from fp32 by rounding, not by more
    chains.forEach((loss, i) => expect(Math.abs(loss - fp32[i]!)).toBeLessThan(2e-2 * Math.abs(fp32[i]!)));
  });
});

describe('the prepared GPU check on a machine without a GPU', () => {
  it('check.sh --dry-run lists every phase with its cap, and an unknown phase is refused', () => {
    const dry = spawnSync('bash', ['bench/gpu/check.sh', '--dry-run', '--skip', 'hf-anchor'], { encoding: 'utf8' });
    expect(dry.status, dry.stderr).toBe(0);
    const phases = [...dry.stdout.matchAll(/^ {2}(\S+) +cap +(\d+) s +(run|off)/gm)].map((m) => [m[1], m[3]]);
    expect(phases.map(([name]) => name)).toEqual(['env', 'build', 'cuda-check', 'kernels', 'static-step', 'graphs', 'weight-copies', 'bench-128', 'bench-512', 'compile-128', 'kernel-count', 'op-count', 'pretrain-128', 'bench-256x128', 'encode-128', 'kernel-ops', 'hf-anchor']);
    expect(phases.find(([name]) => name === 'hf-anchor')![1]).toBe('off');
    const bad = spawnSync('bash', ['bench/gpu/check.sh', '--only', 'nope', '--out', '/tmp'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/no phase named 'nope'/);
  });

  it('scripts/cuda-check.mjs and the kernel, static-step and graph checks skip with exit 3 and say why', () => {
    if (native.runtimeInfo().cudaAvailable) return;
    for (const script of ['scripts/cuda-check.mjs', 'bench/gpu/fused-check.mjs', 'bench/gpu/static-step.mjs', 'bench/gpu/graph-check.mjs', 'bench/gpu/weight-copies-check.mjs', 'bench/gpu/pretrain-speed.mjs']) {
      const run = spawnSync(process.execPath, [script], { encoding: 'utf8' });
      expect(run.status, `${script}: ${run.stderr}`).toBe(3);
      expect(run.stdout).toMatch(/^skip: /m);
    }
  });

  /** A GPU check script's dry run on the CPU (emulated graph steps, a one-layer model): its JSON report. */
  const dryRun = (script: string) => {
    const json = join(mkdtempSync(join(tmpdir(), 'gpu-check-dry-run-')), 'report.json');
    const run = spawnSync(process.execPath, [script, '--json', json], {
      encoding: 'utf8',
      env: { ...process.env, ROFORMER_CHECK_DEVICE: 'cpu', ROFORMER_GRAPH_STEPS: 'emulate' },
    });
    expect(run.status, run.stderr).toBe(0);
    return JSON.parse(readFileSync(json, 'utf8'));
  };

  it('the graph check dry-runs on the CPU (emulated graph steps, a one-layer model): it compares updates against a second eager run and checks dropout under graphs', () => {
    const report = dryRun('bench/gpu/graph-check.mjs');
    expect(report.runs).toHaveLength(3);
    for (const r of report.runs) {
      // The emulated graph step is the eager static step: identical updates, and a noise floor measured.
      expect(r.relativeUpdateDifference).toBe(0);
      expect(r.noiseFloor).toBeGreaterThanOrEqual(0);
      expect(r.worstTensors.length).toBeGreaterThan(0);
    }
    expect(report.dropout.graphs.ways.filter((w: string) => w === 'replayed').length).toBe(8);
    expect(report.dropout.distinct).toBe(8);
  });

  it("the weight copies' check dry-runs on the CPU: bf16 copies against casts, and the weights loaded between graph steps reach the next step", () => {
    const report = dryRun('bench/gpu/weight-copies-check.mjs');
    expect(report.failures).toEqual([]);
    for (const r of [report.kept, report.cast]) {
      expect(r.ways.filter((w: string) => w === 'replayed')).toHaveLength(6);
      expect(r.losses[6]).toBe(r.losses[3]); // the weights saved after step 2, loaded after step 5
      expect(r.losses[5]).not.toBe(r.losses[3]);
    }
    // the CPU's bf16 steps with the copies are bit for bit those that cast every step
    expect(report.kept.losses).toEqual(report.cast.losses);
  });
});
