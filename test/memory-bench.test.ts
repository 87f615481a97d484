// The memory benchmarks (issue 12): each model's training loop measured in a
// process of its own, and the soak benchmark's growth figures.

import { execFileSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { measureInChild } from '../bench/memory.js';
import { soakSvg, summariseSoak, type SoakReport } from '../bench/soak.js';

describe('peak memory per model, in its own process', () => {
  it('reports a peak that grows with the batch (the activations are really measured)', () => {
    const job = { model: 'roformer-v2' as const, size: 'small' as const, config: { num_hidden_layers: 2 }, seq: 64, dtype: 'fp32' as const, device: 'cpu' as const, steps: 2, warmup: 0, mode: 'train' as const, targetFraction: 0.15 };
    const small = measureInChild({ ...job, batch: 1 });
    const large = measureInChild({ ...job, batch: 32 });
    expect(small.steps).toBe(2);
    expect(small.peakRssBytes).toBeGreaterThan(30 * 2 ** 20); // at least Node itself
    expect(small.peakRssBytes).toBeGreaterThanOrEqual(small.rssAfterBytes);
    expect(large.peakRssBytes).toBeGreaterThan(small.peakRssBytes + 20 * 2 ** 20);
  });

  it('roformer-bench --memory refuses encode mode with a clear message', () => {
    let message = '';
    try {
      execFileSync(process.execPath, ['dist/bench/cli.js', '--mode', 'encode', '--memory', '--steps', '1', '--warmup', '0', '--seq', '8', '--batch', '1'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (error) {
      message = String((error as { stderr: string }).stderr);
    }
    expect(message).toMatch(/roformer-bench: --memory measures training loops: use --mode train/);
  });
});

describe('soak figures', () => {
  const series = (f: (m: number) => number) => Array.from({ length: 61 }, (_, i) => ({ minutes: i, rssMB: f(i) }));

  it('a flat series with spikes has ~0% growth; spikes do not decide it', () => {
    const s = summariseSoak(series((m) => (m % 10 === 3 ? 900 : 500)), 5);
    expect(s.settledMB).toBe(500);
    expect(s.finalMB).toBe(500);
    expect(s.maxMB).toBe(900);
    expect(s.growthAfterSettle).toBe(0);
  });

  it('a leak shows as growth after the settling period', () => {
    const s = summariseSoak(series((m) => 400 + 2 * m), 5);
    expect(s.settledMB).toBe(414); // median of minutes 5..9
    expect(s.finalMB).toBe(516); // median of minutes 56..60
    expect(s.growthAfterSettle).toBeCloseTo(516 / 414 - 1, 10);
  });

  it('refuses an empty series and draws a chart with the samples', () => {
    expect(() => summariseSoak([], 5)).toThrow(/no memory samples/);
    const samples = series(() => 500);
    const report: SoakReport = { date: '', command: [], minutes: 60, settleMinutes: 5, samples, ...summariseSoak(samples, 5) };
    const svg = soakSvg(report);
    expect(svg).toMatch(/^<svg/);
    expect(svg.match(/polyline/g)).toHaveLength(1);
    expect(svg).toContain('growth after 5 min: 0.0%');
  });
});
