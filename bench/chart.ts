// The benchmark's outputs for people: a terminal table and an SVG bar chart.

import type { ConfigResult, ModelName } from './harness.js';
import type { PytorchResult } from './pytorch.js';

/** PyTorch's run of one model at one length, eager or compiled. */
const findPytorch = (pytorch: PytorchResult[], seq: number, model: ModelName, head: 'targets' | 'full', compiled: boolean) =>
  pytorch.find((p) => p.seq === seq && p.model === model && p.head === head && Boolean(p.compiled) === compiled);

const fmt = (x: number, digits = 1) => x.toFixed(digits);

export function table(results: ConfigResult[], pytorch: PytorchResult[], mode: string): string {
  const rows: string[][] = [['seq', 'model', 'ms/step (median)', 'p10–p90', 'tokens/s', 'samples/s', 'MFU', 'peak dev MB']];
  for (const r of results) {
    for (const m of [r.roformer, r.baseline, ...(r.gauAlpha ? [r.gauAlpha] : [])]) {
      rows.push([
        String(r.seq),
        m.model,
        fmt(m.msPerStep.median),
        `${fmt(m.msPerStep.p10)}–${fmt(m.msPerStep.p90)}`,
        fmt(m.tokensPerSecond, 0),
        fmt(m.samplesPerSecond, 2),
        `${fmt(100 * m.mfu)}%`,
        fmt(m.peakDeviceBytes / 2 ** 20, 0),
      ]);
    }
    for (const p of pytorch.filter((p) => p.seq === r.seq)) {
      rows.push([String(r.seq), `pytorch ${p.model}${p.compiled ? ' (torch.compile)' : ''}${p.head === 'full' ? ' (head at every position)' : ''}`, fmt(p.msPerStep.median), `${fmt(p.msPerStep.p10)}–${fmt(p.msPerStep.p90)}`, '', '', '', '']);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const lines = rows.map((row) => row.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const ratios = results.map((r) => {
    const parts = [`seq ${r.seq}: RoFormerV2 is ${fmt(r.speedRatio, 2)}× the baseline's ${mode} speed (median of paired steps; ratio of medians ${fmt(r.medianRatio, 2)})`];
    if (r.gauAlpha && r.gauSpeedRatio !== undefined) parts.push(`GAU-α (${r.gauAlpha.parameters.toLocaleString('en')} parameters) is ${fmt(r.gauSpeedRatio, 2)}× RoFormerV2's (${r.roformer.parameters.toLocaleString('en')})`);
    const pt = (model: ModelName, head: 'targets' | 'full', compiled: boolean) => findPytorch(pytorch, r.seq, model, head, compiled)?.msPerStep.median;
    const speedup = (theirs: number | undefined, ours: number) => (theirs === undefined ? undefined : fmt(theirs / ours, 2));
    const v2 = speedup(pt('roformer-v2', 'targets', false), r.roformer.msPerStep.median);
    const base = speedup(pt('roberta-baseline', 'targets', false), r.baseline.msPerStep.median);
    const full = speedup(pt('roformer-v2', 'full', false), r.roformer.msPerStep.median);
    const v2Compiled = speedup(pt('roformer-v2', 'targets', true), r.roformer.msPerStep.median);
    const baseCompiled = speedup(pt('roberta-baseline', 'targets', true), r.baseline.msPerStep.median);
    if (v2) parts.push(`ours/PyTorch RoFormerV2 ${v2}×`);
    if (base) parts.push(`baseline ${base}×`);
    if (full) parts.push(`vs PyTorch with the head at every position ${full}×`);
    if (v2Compiled) parts.push(`ours/torch.compile RoFormerV2 ${v2Compiled}×`);
    if (baseCompiled) parts.push(`baseline ${baseCompiled}×`);
    return parts.join('; ');
  });
  return [...lines, '', ...ratios].join('\n');
}

/** Grouped bars of median ms/step per sequence length (lower is better). */
export function barChartSvg(results: ConfigResult[], pytorch: PytorchResult[], title: string): string {
  const series: Array<{ label: string; color: string; value: (r: ConfigResult) => number | undefined }> = [
    { label: 'RoFormerV2 (ours)', color: '#1f77b4', value: (r) => r.roformer.msPerStep.median },
    { label: 'RoBERTa baseline (ours)', color: '#ff7f0e', value: (r) => r.baseline.msPerStep.median },
  ];
  if (results.some((r) => r.gauAlpha)) series.push({ label: 'GAU-α, 2× layers (ours)', color: '#2ca02c', value: (r) => r.gauAlpha?.msPerStep.median });
  if (pytorch.length > 0) {
    series.push(
      { label: 'RoFormerV2 (PyTorch)', color: '#aec7e8', value: (r) => findPytorch(pytorch, r.seq, 'roformer-v2', 'targets', false)?.msPerStep.median },
      { label: 'RoBERTa baseline (PyTorch)', color: '#ffbb78', value: (r) => findPytorch(pytorch, r.seq, 'roberta-baseline', 'targets', false)?.msPerStep.median },
    );
  }
  if (pytorch.some((p) => p.compiled)) {
    series.push(
      { label: 'RoFormerV2 (torch.compile)', color: '#9467bd', value: (r) => findPytorch(pytorch, r.seq, 'roformer-v2', 'targets', true)?.msPerStep.median },
      { label: 'RoBERTa baseline (torch.compile)', color: '#c5b0d5', value: (r) => findPytorch(pytorch, r.seq, 'roberta-baseline', 'targets', true)?.msPerStep.median },
    );
  }
  return groupedBarsSvg({
    title,
    yLabel: 'ms per step (median, lower is better)',
    groups: results.map((r) => `seq ${r.seq} (×${r.speedRatio.toFixed(2)})`),
    series: series.map((s) => ({ label: s.label, color: s.color, values: results.map((r) => s.value(r)) })),
    format: (v) => v.toFixed(0),
  });
}

export interface BarSeries {
  label: string;
  color: string;
  /** One value per group (undefined: no bar). */
  values: Array<number | undefined>;
  /** Optional range per group (min–max over seeds), drawn as a whisker. */
  ranges?: Array<[number, number] | undefined>;
}

/** A bar chart: for each group (x axis), one bar per series, with a legend below. */
export function groupedBarsSvg(chart: { title: string; yLabel: string; groups: string[]; series: BarSeries[]; format: (v: number) => string; width?: number }): string {
  const { groups, series } = chart;
  const width = chart.width ?? 720;
  const legendRows = Math.ceil(series.length / 2);
  const pad = { left: 70, right: 20, top: 40, bottom: 40 + 16 * legendRows };
  const height = 290 + pad.bottom;
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = Math.max(1e-9, ...series.flatMap((s) => [...s.values.map((v) => v ?? 0), ...(s.ranges ?? []).map((r) => r?.[1] ?? 0)]));
  const groupW = plotW / Math.max(1, groups.length);
  const barW = (groupW * 0.8) / series.length;
  const yOf = (v: number) => pad.top + plotH - (v / max) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${pad.left}" y="24" font-size="15" font-weight="bold">${chart.title}</text>`,
    `<line x1="${pad.left}" x2="${pad.left}" y1="${pad.top}" y2="${pad.top + plotH}" stroke="#333"/>`,
    `<line x1="${pad.left}" x2="${pad.left + plotW}" y1="${pad.top + plotH}" y2="${pad.top + plotH}" stroke="#333"/>`,
    `<text x="16" y="${pad.top + plotH / 2}" font-size="12" transform="rotate(-90 16 ${pad.top + plotH / 2})" text-anchor="middle">${chart.yLabel}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = yOf(v);
    parts.push(`<line x1="${pad.left}" x2="${pad.left + plotW}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${pad.left - 6}" y="${y + 4}" font-size="11" text-anchor="end">${v >= 100 ? v.toFixed(0) : v.toPrecision(3)}</text>`);
  }
  groups.forEach((group, g) => {
    const x0 = pad.left + g * groupW + groupW * 0.1;
    series.forEach((s, k) => {
      const v = s.values[g];
      if (v === undefined) return;
      const h = (v / max) * plotH;
      const x = x0 + k * barW;
      parts.push(`<rect x="${x}" y="${pad.top + plotH - h}" width="${barW - 2}" height="${h}" fill="${s.color}"/>`);
      const range = s.ranges?.[g];
      if (range) parts.push(`<line x1="${x + barW / 2 - 1}" x2="${x + barW / 2 - 1}" y1="${yOf(range[0])}" y2="${yOf(range[1])}" stroke="#333"/>`);
      parts.push(`<text x="${x + barW / 2}" y="${Math.min(pad.top + plotH - h, range ? yOf(range[1]) : Infinity) - 4}" font-size="10" text-anchor="middle">${chart.format(v)}</text>`);
    });
    parts.push(`<text x="${x0 + (barW * series.length) / 2}" y="${pad.top + plotH + 16}" font-size="12" text-anchor="middle">${group}</text>`);
  });
  series.forEach((s, k) => {
    const x = pad.left + (k % 2) * 330;
    const y = pad.top + plotH + 40 + Math.floor(k / 2) * 16;
    parts.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${s.color}"/><text x="${x + 18}" y="${y}" font-size="12">${s.label}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
