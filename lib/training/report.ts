// Training report: metrics as JSON lines, and an SVG a person can look at (the
// training and held-out loss, and held-out masked-token accuracy, by step).

import { appendFile, readFile } from 'node:fs/promises';

import { writeFileAtomic } from '../model/safetensors.js';

export interface TrainMetric {
  type: 'train';
  step: number;
  loss: number;
  lr: number;
  alpha: number;
  gradNorm: number;
  tokensPerSecond: number;
  skipped: boolean;
  elapsedSeconds: number;
}

export interface EvalMetric {
  type: 'eval';
  step: number;
  loss: number;
  perplexity: number;
  accuracy: number;
  targets: number;
}

export type Metric = TrainMetric | EvalMetric;

export async function appendMetric(path: string, metric: Metric): Promise<void> {
  await appendFile(path, JSON.stringify(metric) + '\n');
}

export async function readMetrics(path: string): Promise<Metric[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Metric);
}

interface Series {
  label: string;
  color: string;
  points: Array<[number, number]>;
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** One line chart panel: axes with ticks, one polyline per series, a legend. */
function panel(title: string, series: Series[], x0: number, y0: number, width: number, height: number): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return '';
  const [minX, maxX] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [minY, maxY] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (maxY === minY) [minY, maxY] = [minY - 1, maxY + 1];
  const pad = { left: 56, right: 16, top: 28, bottom: 36 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const sx = (x: number) => x0 + pad.left + (maxX === minX ? w / 2 : ((x - minX) / (maxX - minX)) * w);
  const sy = (y: number) => y0 + pad.top + h - ((y - minY) / (maxY - minY)) * h;
  const parts: string[] = [];
  parts.push(`<text x="${x0 + pad.left}" y="${y0 + 18}" font-size="14" font-weight="bold">${escape(title)}</text>`);
  parts.push(`<rect x="${x0 + pad.left}" y="${y0 + pad.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  for (let i = 0; i <= 4; i++) {
    const y = minY + ((maxY - minY) * i) / 4;
    const x = minX + ((maxX - minX) * i) / 4;
    parts.push(`<line x1="${x0 + pad.left}" x2="${x0 + pad.left + w}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eee"/>`);
    parts.push(`<text x="${x0 + pad.left - 6}" y="${sy(y) + 4}" font-size="11" text-anchor="end">${+y.toPrecision(3)}</text>`);
    parts.push(`<text x="${sx(x)}" y="${y0 + pad.top + h + 16}" font-size="11" text-anchor="middle">${Math.round(x)}</text>`);
  }
  parts.push(`<text x="${x0 + pad.left + w / 2}" y="${y0 + height - 4}" font-size="11" text-anchor="middle">step</text>`);
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${d}"/>`);
    if (s.points.length < 40) for (const [x, y] of s.points) parts.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="2.5" fill="${s.color}"/>`);
    const lx = x0 + pad.left + w - 150;
    const ly = y0 + pad.top + 14 + i * 16;
    parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${lx + 24}" y="${ly}" font-size="11">${escape(s.label)}</text>`);
  });
  return parts.join('\n');
}

/** Smooths a noisy training curve with an exponential moving average. */
function ema(points: Array<[number, number]>, beta = 0.9): Array<[number, number]> {
  let value: number | undefined;
  return points.map(([x, y]) => {
    value = value === undefined ? y : beta * value + (1 - beta) * y;
    return [x, value];
  });
}

/** The report picture: loss (train, smoothed train, held-out) and held-out accuracy. */
export function reportSvg(metrics: Metric[], title = 'RoFormerV2 MLM pre-training'): string {
  const train = metrics.filter((m): m is TrainMetric => m.type === 'train' && Number.isFinite(m.loss));
  const evals = metrics.filter((m): m is EvalMetric => m.type === 'eval');
  const width = 760;
  const height = 300;
  const body = [
    panel(
      `${title}: loss`,
      [
        { label: 'train loss', color: '#bbb', points: train.map((m) => [m.step, m.loss]) },
        { label: 'train loss (EMA)', color: '#1f77b4', points: ema(train.map((m) => [m.step, m.loss])) },
        { label: 'held-out loss', color: '#d62728', points: evals.map((m) => [m.step, m.loss]) },
      ],
      0,
      0,
      width,
      height,
    ),
    panel('held-out masked-token accuracy', [{ label: 'accuracy', color: '#2ca02c', points: evals.map((m) => [m.step, m.accuracy]) }], 0, height, width, height),
  ].join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${2 * height}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${body}\n</svg>\n`;
}

export async function writeReport(path: string, metrics: Metric[]): Promise<void> {
  await writeFileAtomic(path, [reportSvg(metrics)]);
}
