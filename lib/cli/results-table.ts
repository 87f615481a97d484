// Small aligned tables of task metrics, as the supervised commands print them
// at the end of a run: rows of figures, columns of sets (dev, test) or tasks.

import type { Metrics } from '../tasks/finetune.js';

/** Metrics are fractions; a table shows them as percentages. */
export const percent = (x: number | null | undefined) => (x === null || x === undefined ? '–' : `${(100 * x).toFixed(2)}%`);

/** Left column as wide as its longest cell, the others right-aligned. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => [...(r[c] ?? '')].length)));
  return rows
    .map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   '))
    .join('\n');
}

/** The metric names of several results, in the order first seen. */
export function metricNames(results: ReadonlyArray<Metrics | null>): string[] {
  const names: string[] = [];
  for (const r of results) for (const k of Object.keys(r ?? {})) if (!names.includes(k)) names.push(k);
  return names;
}

/**
 *            dev       test
 *   accuracy 81.25%    79.00%
 *   majority 50.00%    50.00%
 */
export function finetuneTable(results: { dev: Metrics | null; test: Metrics | null; majority: { dev: number | null; test: number | null } }): string {
  const sets = (['dev', 'test'] as const).filter((s) => results[s] !== null);
  if (sets.length === 0) return '(no labelled dev or test examples: nothing to score)';
  const rows = [['', ...sets]];
  for (const name of metricNames(sets.map((s) => results[s]))) rows.push([name, ...sets.map((s) => percent(results[s]?.[name as keyof Metrics]))]);
  if (sets.some((s) => results.majority[s] !== null)) rows.push(['majority class (accuracy)', ...sets.map((s) => percent(results.majority[s]))]);
  return table(rows);
}
