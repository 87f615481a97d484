// report.svg: the metrics of a run as a picture a person can look at.
//
//   loss                  training loss (raw and smoothed) and held-out loss, one colour per task
//   held-out <figure>     one panel per other eval figure (accuracy, f1, em, …), one curve per task
//   resident memory       the process's RSS after each step
//
// A run without tasks (pre-training) has one curve of each; a multi-task run
// one per task, keyed by colour in the legend on the right.

import { writeFileAtomic } from '../util/atomic-file.js';
import type { EvalMetric, Metric, TrainMetric } from './metrics.js';

// The records used to live here; kept importable from this module.
export { appendMetric, readMetrics } from './metrics.js';
export type { EvalMetric, Metric, TrainMetric } from './metrics.js';

type Points = Array<[number, number]>;

interface Series {
  color: string;
  points: Points;
  dashed?: boolean;
  opacity?: number;
}

interface LegendEntry {
  label: string;
  color: string;
  dashed?: boolean;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const WIDTH = 900;
const LEGEND_WIDTH = 170;
/** Eval figures not drawn in a panel of their own: the loss has the loss panel, the rest are counts or the loss restated. */
const NOT_PLOTTED = new Set(['type', 'step', 'task', 'loss', 'perplexity', 'targets', 'examples', 'samples']);

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** One line chart: axes with ticks, the series, and a legend to the right of the plot. */
function panel(title: string, series: Series[], legend: LegendEntry[], y0: number, height: number, fromZero = false): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return '';
  const [minX, maxX] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [minY, maxY] = [fromZero ? 0 : Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (maxY === minY) [minY, maxY] = [minY - 1, maxY + 1];
  const pad = { left: 56, right: 16 + LEGEND_WIDTH, top: 28, bottom: 36 };
  const w = WIDTH - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const sx = (x: number) => pad.left + (maxX === minX ? w / 2 : ((x - minX) / (maxX - minX)) * w);
  const sy = (y: number) => y0 + pad.top + h - ((y - minY) / (maxY - minY)) * h;
  const parts: string[] = [];
  parts.push(`<text x="${pad.left}" y="${y0 + 18}" font-size="14" font-weight="bold">${escape(title)}</text>`);
  parts.push(`<rect x="${pad.left}" y="${y0 + pad.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  for (let i = 0; i <= 4; i++) {
    const y = minY + ((maxY - minY) * i) / 4;
    const x = minX + ((maxX - minX) * i) / 4;
    parts.push(`<line x1="${pad.left}" x2="${pad.left + w}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eee"/>`);
    parts.push(`<text x="${pad.left - 6}" y="${sy(y) + 4}" font-size="11" text-anchor="end">${+y.toPrecision(3)}</text>`);
    parts.push(`<text x="${sx(x)}" y="${y0 + pad.top + h + 16}" font-size="11" text-anchor="middle">${Math.round(x)}</text>`);
  }
  parts.push(`<text x="${pad.left + w / 2}" y="${y0 + height - 4}" font-size="11" text-anchor="middle">step</text>`);
  for (const s of series) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    const style = `${s.dashed ? ' stroke-dasharray="5,3"' : ''}${s.opacity !== undefined ? ` stroke-opacity="${s.opacity}"` : ''}`;
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5"${style} points="${d}"/>`);
    if (s.points.length < 40 && s.opacity === undefined) {
      for (const [x, y] of s.points) parts.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="2.5" fill="${s.color}"/>`);
    }
  }
  legend.forEach((entry, i) => {
    const lx = WIDTH - LEGEND_WIDTH;
    const ly = y0 + pad.top + 10 + i * 15;
    if (ly > y0 + height - 8) return; // more entries than fit: the colours still tell the curves apart
    parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${entry.color}" stroke-width="2"${entry.dashed ? ' stroke-dasharray="5,3"' : ''}/>`);
    parts.push(`<text x="${lx + 24}" y="${ly}" font-size="11">${escape(entry.label)}</text>`);
  });
  return parts.join('\n');
}

/** Smooths a noisy training curve with an exponential moving average. */
function ema(points: Points, beta = 0.9): Points {
  let value: number | undefined;
  return points.map(([x, y]) => {
    value = value === undefined ? y : beta * value + (1 - beta) * y;
    return [x, value];
  });
}

/** Points grouped by task ('' for records without one), in order of first appearance. */
function byTask(entries: Array<{ task: string; point: [number, number] }>): Map<string, Points> {
  const groups = new Map<string, Points>();
  for (const { task, point } of entries) {
    if (!Number.isFinite(point[1])) continue;
    if (!groups.has(task)) groups.set(task, []);
    groups.get(task)!.push(point);
  }
  return groups;
}

function trainLossPoints(train: TrainMetric[]) {
  return train.flatMap((m) =>
    m.taskLosses
      ? Object.entries(m.taskLosses).map(([task, loss]) => ({ task, point: [m.step, loss] as [number, number] }))
      : [{ task: m.task ?? '', point: [m.step, m.loss] as [number, number] }],
  );
}

const evalPoints = (evals: EvalMetric[], name: string) =>
  evals.filter((m) => typeof m[name] === 'number').map((m) => ({ task: m.task ?? '', point: [m.step, m[name] as number] as [number, number] }));

/** The report picture (see the top of this file). */
export function reportSvg(metrics: Metric[], title = 'RoFormerV2 MLM pre-training'): string {
  const train = metrics.filter((m): m is TrainMetric => m.type === 'train');
  const evals = metrics.filter((m): m is EvalMetric => m.type === 'eval');
  const trainLoss = byTask(trainLossPoints(train));
  const evalLoss = byTask(evalPoints(evals, 'loss'));
  const tasks = [...new Set([...trainLoss.keys(), ...evalLoss.keys(), ...evals.map((m) => m.task ?? '')])];
  const color = (task: string) => PALETTE[tasks.indexOf(task) % PALETTE.length]!;
  const multiTask = tasks.some((t) => t !== '');

  const panels: Array<{ title: string; series: Series[]; legend: LegendEntry[]; height: number; fromZero?: boolean }> = [];

  // Loss. One task: raw grey, smoothed blue, held-out red, as before. Several: a colour per task,
  // smoothed solid and held-out dashed, the raw curves faint.
  const lossSeries: Series[] = [];
  const lossLegend: LegendEntry[] = [];
  if (!multiTask) {
    const raw = trainLoss.get('') ?? [];
    lossSeries.push({ color: '#bbb', points: raw }, { color: PALETTE[0]!, points: ema(raw) }, { color: PALETTE[1]!, points: evalLoss.get('') ?? [] });
    lossLegend.push({ label: 'train loss', color: '#bbb' }, { label: 'train loss (EMA)', color: PALETTE[0]! }, { label: 'held-out loss', color: PALETTE[1]! });
  } else {
    for (const task of tasks) {
      const raw = trainLoss.get(task) ?? [];
      lossSeries.push({ color: color(task), points: raw, opacity: 0.2 }, { color: color(task), points: ema(raw) });
      lossSeries.push({ color: color(task), points: evalLoss.get(task) ?? [], dashed: true });
      lossLegend.push({ label: task || 'all tasks', color: color(task) });
    }
    lossLegend.push({ label: 'train (EMA)', color: '#333' }, { label: 'held-out', color: '#333', dashed: true });
  }
  panels.push({ title: `${title}: loss`, series: lossSeries, legend: lossLegend, height: 300 });

  // Every other eval figure in a panel of its own.
  const figures = [...new Set(evals.flatMap((m) => Object.keys(m).filter((k) => !NOT_PLOTTED.has(k) && typeof m[k] === 'number')))];
  for (const name of figures) {
    const groups = byTask(evalPoints(evals, name));
    const withFigure = tasks.filter((task) => groups.has(task)); // legends list the tasks in one order throughout
    panels.push({
      title: `held-out ${name}`,
      series: withFigure.map((task) => ({ color: multiTask ? color(task) : PALETTE[2]!, points: groups.get(task)! })),
      legend: withFigure.map((task) => ({ label: task || name, color: multiTask ? color(task) : PALETTE[2]! })),
      height: 260,
    });
  }

  // Memory: flat after warm-up is healthy; a steady climb is a leak. Drawn from 0, so that growth is seen in proportion.
  const rss = train.filter((m) => typeof m.rssMB === 'number').map((m) => [m.step, m.rssMB] as [number, number]);
  if (rss.length > 0) {
    panels.push({ title: 'resident memory (MB)', series: [{ color: '#444', points: rss }], legend: [{ label: 'RSS', color: '#444' }], height: 200, fromZero: true });
  }

  let y = 0;
  const body: string[] = [];
  for (const p of panels) {
    const svg = panel(p.title, p.series, p.legend, y, p.height, p.fromZero);
    if (svg === '') continue;
    body.push(svg);
    y += p.height;
  }
  const height = Math.max(y, 40);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}

export async function writeReport(path: string, metrics: Metric[], title?: string): Promise<void> {
  await writeFileAtomic(path, [reportSvg(metrics, title)]);
}
