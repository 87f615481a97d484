// roformer-bench: argument validation and the JSON it writes (not speed: speed is
// measured by the benchmark itself, never asserted in tests).

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { barChartSvg, table } from '../bench/chart.js';
import { flopsPerToken, randomBatch, summarise, type ConfigResult, type ModelName, type ModelResult } from '../bench/harness.js';
import { hasTorchCompile, type PytorchResult } from '../bench/pytorch.js';
import { resolveConfig } from '../lib/model/config.js';

const run = promisify(execFile);
const BENCH = 'dist/bench/cli.js';

async function fails(args: string[]): Promise<string> {
  try {
    await run(process.execPath, [BENCH, ...args]);
  } catch (error) {
    const e = error as { code: number; stderr: string };
    expect(e.code).toBe(1);
    return e.stderr;
  }
  throw new Error(`roformer-bench ${args.join(' ')} should have failed`);
}

/** A fresh folder with a --config file of a tiny model in it. */
function tinyConfig(prefix: string): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const config = join(dir, 'tiny.json');
  writeFileSync(config, JSON.stringify({ num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, vocab_size: 500 }));
  return { dir, config };
}

describe('roformer-bench arguments', () => {
  it('--help works and lists the options', async () => {
    const { stdout } = await run(process.execPath, [BENCH, '--help']);
    for (const option of ['--size', '--seq', '--batch', '--dtype', '--device', '--steps', '--warmup', '--threads', '--json', '--svg', '--mode', '--vs-pytorch']) {
      expect(stdout).toContain(option);
    }
  });

  it('refuses bad values with a message naming the option', async () => {
    expect(await fails(['--seq', '128,abc'])).toMatch(/--seq takes comma-separated lengths ≥ 2, got 'abc'/);
    expect(await fails(['--batch', '0'])).toMatch(/--batch must be an integer >= 1, got '0'/);
    expect(await fails(['--dtype', 'fp8'])).toMatch(/--dtype must be one of fp32, bf16, fp16, got 'fp8'/);
    expect(await fails(['--size', 'huge'])).toMatch(/--size must be one of small, base, large/);
    expect(await fails(['--device', 'tpu'])).toMatch(/--device must be one of cpu, cuda/);
    expect(await fails(['--mode', 'infer'])).toMatch(/--mode must be one of train, encode/);
    expect(await fails(['--dtype', 'fp16'])).toMatch(/fp16 trains on CUDA only/);
    expect(await fails(['--device', 'cuda'])).toMatch(/CUDA is not available/);
    expect(await fails(['--mode', 'encode', '--vs-pytorch', '--seq', '8', '--steps', '1', '--warmup', '0', '--size', 'small', '--batch', '1'])).toMatch(/--vs-pytorch compares training steps/);
    const dir = mkdtempSync(join(tmpdir(), 'bench-args-'));
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ hidden_size: 100, num_attention_heads: 3 }));
    expect(await fails(['--config', join(dir, 'bad.json')])).toMatch(/bad\.json: hidden_size \(100\) must be divisible by num_attention_heads \(3\)/);
    expect(await fails(['--seq', '600'])).toMatch(/--seq 600 exceeds max_position_embeddings 512/);
  });
});

describe('roformer-bench output', () => {
  it('prints the table and writes JSON and SVG of the documented shape', async () => {
    const { dir, config } = tinyConfig('bench-out-');
    const json = join(dir, 'out.json');
    const svg = join(dir, 'chart.svg');
    const { stdout } = await run(process.execPath, [BENCH, '--config', config, '--seq', '16,32', '--batch', '2', '--steps', '3', '--warmup', '1', '--json', json, '--svg', svg]);
    expect(stdout).toMatch(/roformer-bench — libtorch \d+\.\d+/);
    expect(stdout).toMatch(/BLAS/);
    expect(stdout).toMatch(/seq 16: RoFormerV2 is \d+\.\d+× the baseline's train speed/);

    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.machine).toMatchObject({ device: 'cpu', threads: expect.any(Number), libtorch: expect.any(String) });
    expect(report.options).toMatchObject({ seq: [16, 32], batch: 2, steps: 3, warmup: 1, dtype: 'fp32', mode: 'train' });
    expect(report.matmulPeakFlops).toBeGreaterThan(0);
    expect(report.results).toHaveLength(2);
    for (const r of report.results) {
      expect(r.medianRatio).toBeCloseTo(r.baseline.msPerStep.median / r.roformer.msPerStep.median, 10);
      const pairs = r.roformer.msSamples.map((ms: number, i: number) => r.baseline.msSamples[i] / ms).sort((a: number, b: number) => a - b);
      expect(r.speedRatio).toBeCloseTo(pairs[1], 10); // median of the 3 paired ratios
      for (const m of [r.roformer, r.baseline]) {
        expect(m.msSamples).toHaveLength(3); // warm-up excluded
        expect(m.msPerStep.p10).toBeLessThanOrEqual(m.msPerStep.median);
        expect(m.msPerStep.median).toBeLessThanOrEqual(m.msPerStep.p90);
        expect(m.tokensPerSecond).toBeCloseTo((2 * r.seq * 1000) / m.msPerStep.median, 6);
        expect(m.samplesPerSecond).toBeCloseTo((2 * 1000) / m.msPerStep.median, 6);
        expect(m.mfu).toBeGreaterThan(0);
      }
      expect(r.roformer.model).toBe('roformer-v2');
      expect(r.baseline.model).toBe('roberta-baseline');
      expect(r.baseline.parameters).toBeGreaterThan(r.roformer.parameters);
    }
    expect(report.pytorch).toEqual([]);
    const chart = readFileSync(svg, 'utf8');
    expect(chart).toMatch(/^<svg/);
    expect(chart.match(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="#1f77b4"\/>/g)?.length).toBe(3); // two bars + the legend swatch
  });
});

describe('roformer-bench --ranks (data-parallel scaling)', () => {
  it('runs 1 rank, N ranks and N independent processes, and reports their ratios', async () => {
    const { dir, config } = tinyConfig('bench-ranks-');
    const json = join(dir, 'scaling.json');
    const { stdout } = await run(process.execPath, [BENCH, '--ranks', '2', '--config', config, '--seq', '16', '--batch', '2', '--steps', '3', '--warmup', '1', '--repeats', '1', '--json', json]);
    expect(stdout).toMatch(/seq 16: 2 ranks = \d+\.\d\d× the tokens\/s of 1 rank/);
    expect(stdout).toMatch(/ceiling, 2 independent processes without communication: \d+\.\d\d×/);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    expect(report.machine).toMatchObject({ threadsPerRank: 1 });
    const [result] = report.results;
    expect(result.runs.map((r: { world: number; independent: boolean }) => [r.world, r.independent])).toEqual([[1, false], [2, false], [2, true]]);
    const [one, ranks, independent] = result.runs;
    expect(one.tokensPerSecond).toBeCloseTo((2 * 16 * 1000) / one.msPerStep.median, 6);
    expect(ranks.tokensPerSecond).toBeCloseTo((2 * 2 * 16 * 1000) / ranks.msPerStep.median, 6); // both ranks' tokens per step
    expect(result.ratio).toBeCloseTo(ranks.tokensPerSecond / one.tokensPerSecond, 10);
    expect(result.efficiency).toBeCloseTo(result.ratio / 2, 10);
    expect(result.ceiling).toBeCloseTo(independent.tokensPerSecond / one.tokensPerSecond, 10);
  }, 60_000);

  it('refuses what it cannot measure', async () => {
    expect(await fails(['--ranks', '1'])).toMatch(/--ranks must be at least 2/);
    expect(await fails(['--ranks', '2', '--mode', 'encode'])).toMatch(/--ranks measures CPU training steps/);
  });
});

describe('benchmark arithmetic', () => {
  it('FLOPs per token follow 6·N + 12·L·s·d', () => {
    const c = resolveConfig('base');
    const n = 12 * (4 * 768 * 768 + 2 * 768 * 3072);
    expect(flopsPerToken(c, 128, 'train', 0)).toBe(6 * n + 12 * 12 * 128 * 768);
    expect(flopsPerToken(c, 512, 'encode', 0)).toBeCloseTo((6 * n + 12 * 12 * 512 * 768) / 3, 6);
    expect(flopsPerToken(c, 128, 'train', 0.15)).toBeCloseTo(6 * (n + 0.15 * 12000 * 768) + 12 * 12 * 128 * 768, 6);
  });

  it('random batches of one shape have the same number of target slots (so CUDA graph steps replay)', () => {
    const slots = new Set<number>();
    for (let seed = 0; seed < 20; seed++) {
      const b = randomBatch(4, 64, 500, 0.15, seed);
      const ids = Array.from(b.inputIds.toArray(), Number);
      const positions = Array.from(b.targetPositions.toArray(), Number);
      const targets = Array.from(b.targetIds.toArray(), Number);
      slots.add(positions.length);
      expect(positions.length % 8).toBe(0);
      const real = targets.filter((t) => t !== -100).length;
      expect(real).toBeGreaterThan(0);
      // Real targets first, each the id at its position; the rest ignored.
      targets.forEach((t, i) => (i < real ? expect(t).toBe(ids[positions[i]!]) : expect(t).toBe(-100)));
      for (const t of [b.inputIds, b.targetPositions, b.targetIds]) t.dispose();
    }
    // ⌈0.15 · 256⌉ = 39 → 40 slots, unless a draw exceeds it (then the next multiple of 8).
    expect([...slots].every((n) => n >= 40)).toBe(true);
    expect(slots.has(40)).toBe(true);
  });

  it('summarise gives median and spread', () => {
    expect(summarise([5, 1, 4, 2, 3])).toEqual({ median: 3, p10: 1, p90: 5, min: 1, max: 5 });
  });
});

describe('--vs-pytorch reporting', () => {
  const ms = (median: number) => summarise([median]);
  const ours = (model: ModelName, median: number): ModelResult => ({
    model, parameters: 1, msPerStep: ms(median), tokensPerSecond: 1, samplesPerSecond: 1, peakDeviceBytes: 0, flopsPerToken: 1, mfu: 0.1, graphReplays: 0, msSamples: [median],
  });
  const results: ConfigResult[] = [{ seq: 128, batch: 64, roformer: ours('roformer-v2', 40), baseline: ours('roberta-baseline', 50), speedRatio: 1.25, medianRatio: 1.25, peakHostBytes: 0 }];
  const theirs = (model: ModelName, head: 'targets' | 'full', compiled: boolean, median: number): PytorchResult => ({ model, seq: 128, head, compiled, msPerStep: ms(median), torchVersion: '2.6.0', threads: 1 });

  it('keeps eager and torch.compile apart: each ratio is over its own run', () => {
    const pytorch = [theirs('roformer-v2', 'targets', false, 80), theirs('roberta-baseline', 'targets', false, 75), theirs('roformer-v2', 'targets', true, 30), theirs('roberta-baseline', 'targets', true, 60)];
    const text = table(results, pytorch, 'train');
    expect(text).toMatch(/ours\/PyTorch RoFormerV2 2\.00×; baseline 1\.50×/);
    expect(text).toMatch(/ours\/torch\.compile RoFormerV2 0\.75×; baseline 1\.20×/);
    expect(text).toMatch(/pytorch roformer-v2 \(torch\.compile\)/);
    const svg = barChartSvg(results, pytorch, 'title');
    expect(svg).toContain('RoFormerV2 (torch.compile)');
    // Without compiled runs, no compiled ratio and no compiled bars.
    const eager = pytorch.filter((p) => !p.compiled);
    expect(table(results, eager, 'train')).not.toMatch(/torch\.compile/);
    expect(barChartSvg(results, eager, 'title')).not.toContain('torch.compile');
  });

  it('asks for torch.compile only where torch has it', () => {
    expect(hasTorchCompile('2.6.0+cu124')).toBe(true);
    expect(hasTorchCompile('2.11.0')).toBe(true);
    expect(hasTorchCompile('1.13.1')).toBe(false);
  });
});
