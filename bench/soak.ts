#!/usr/bin/env node
// roformer soak benchmark: runs `roformer pretrain` for a set time and records its
// resident memory over time, to show that a long run's memory stays flat.
//
//   node dist/bench/soak.js --minutes 60 --json soak.json --svg soak.svg [-- <pretrain flags>]
//
// By default it pre-trains the small model (batch 8 × 128, fp32, an evaluation every
// 100 steps and a checkpoint every 200, so their memory is part of the picture) on the built-in
// demo corpus (Song ci from the chinese-poetry package). Memory is read from /proc/<pid>/status (VmRSS) of the pretrain
// process itself every --interval seconds; at the end the run is stopped with
// SIGINT (it checkpoints and exits) and the growth after --settle minutes reported.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Command } from 'commander';

import { ensureDemoCorpus } from '../lib/data/demo-corpus.js';
import { positiveNum } from './flags.js';

export interface SoakSample {
  minutes: number;
  rssMB: number;
}

export interface SoakReport {
  date: string;
  command: string[];
  minutes: number;
  settleMinutes: number;
  samples: SoakSample[];
  /** Resident memory at the end of the settling period, MB. */
  settledMB: number;
  finalMB: number;
  maxMB: number;
  /** Resident memory at the end over the settled figure, minus one (0.05 = 5%). */
  growthAfterSettle: number;
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((p, q) => p - q);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
};

/**
 * Growth figures of a series of samples: the target is judged on these. The settled
 * and final figures are medians of five samples, so one sample taken during an
 * evaluation or a checkpoint (short-lived buffers) does not decide the trend.
 */
export function summariseSoak(samples: SoakSample[], settleMinutes: number): Pick<SoakReport, 'settledMB' | 'finalMB' | 'maxMB' | 'growthAfterSettle'> {
  if (samples.length === 0) throw new Error('no memory samples were taken');
  let first = samples.findIndex((s) => s.minutes >= settleMinutes);
  if (first < 0) first = Math.max(0, samples.length - 5);
  const settledMB = median(samples.slice(first, first + 5).map((s) => s.rssMB));
  const finalMB = median(samples.slice(Math.max(first, samples.length - 5)).map((s) => s.rssMB));
  return { settledMB, finalMB, maxMB: Math.max(...samples.map((s) => s.rssMB)), growthAfterSettle: finalMB / settledMB - 1 };
}

/** Resident memory of another process, MB (Linux). */
function rssOf(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : null;
  } catch {
    return null;
  }
}

/** A line chart of resident memory over time, with the settling point marked. */
export function soakSvg(report: SoakReport): string {
  const w = 640, h = 320, left = 60, right = 20, top = 40, bottom = 44;
  const maxX = Math.max(report.minutes, ...report.samples.map((s) => s.minutes), 1e-9);
  const maxY = Math.max(...report.samples.map((s) => s.rssMB)) * 1.1;
  const x = (m: number) => left + (m / maxX) * (w - left - right);
  const y = (mb: number) => h - bottom - (mb / maxY) * (h - top - bottom);
  const points = report.samples.map((s) => `${x(s.minutes).toFixed(1)},${y(s.rssMB).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const mb = f * maxY;
    return `<line x1="${left}" x2="${w - right}" y1="${y(mb)}" y2="${y(mb)}" stroke="#eee"/><text x="${left - 6}" y="${y(mb) + 4}" text-anchor="end">${mb.toFixed(0)}</text>`;
  });
  const xTicks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${x(f * maxX)}" y="${h - bottom + 16}" text-anchor="middle">${(f * maxX).toFixed(f * maxX < 10 ? 1 : 0)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="20" font-size="13">roformer pretrain: resident memory over time (growth after ${report.settleMinutes} min: ${(report.growthAfterSettle * 100).toFixed(1)}%)</text>
${ticks.join('\n')}
${xTicks.join('\n')}
<line x1="${x(report.settleMinutes)}" x2="${x(report.settleMinutes)}" y1="${top}" y2="${h - bottom}" stroke="#999" stroke-dasharray="4 3"/>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${points}"/>
<text x="${(left + w - right) / 2}" y="${h - 8}" text-anchor="middle">minutes</text>
<text x="14" y="${(top + h - bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(top + h - bottom) / 2})">resident memory (MB)</text>
</svg>
`;
}

async function main(): Promise<void> {
  const program = new Command()
    .name('soak')
    .description('run `roformer pretrain` for a set time and report its resident memory over time')
    .option('--minutes <m>', 'how long to run', positiveNum('--minutes'), 60)
    .option('--settle <m>', 'minutes after which memory should stay flat', positiveNum('--settle'), 5)
    .option('--interval <s>', 'seconds between memory samples', positiveNum('--interval'), 10)
    .option('--json <file>', 'write the samples and figures as JSON')
    .option('--svg <file>', 'write a chart of memory over time')
    .argument('[pretrain...]', 'flags for roformer pretrain (after --); default: the demo corpus, small model, batch 8 × 128')
    .parse(process.argv);
  const options = program.opts<{ minutes: number; settle: number; interval: number; json?: string; svg?: string }>();
  const extra = program.args;
  const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'lib', 'cli.js');
  const out = mkdtempSync(join(tmpdir(), 'roformer-soak-'));
  // Default: the demo's corpus (Song ci from chinese-poetry) with the small model, batch 8 × 128, fp32.
  const flags = extra.length > 0 ? extra : ['--corpus', ...(await ensureDemoCorpus(join(out, 'corpus'))), '--size', 'small', '--vocab-size', '8000', '--max-length', '128', '--batch-size', '8', '--eval-every', '100', '--save-every', '200'];
  const command = [cli, 'pretrain', ...flags, '--out', join(out, 'run'), '--steps', '100000000'];
  console.log(`soak: ${options.minutes} min of roformer ${command.slice(1).join(' ')}`);

  const child = spawn(process.execPath, command, { stdio: ['ignore', 'ignore', 'inherit'] });
  const started = Date.now();
  const samples: SoakSample[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let running = true;
  void exited.then(() => (running = false));
  while (running && Date.now() - started < options.minutes * 60_000) {
    await new Promise((r) => setTimeout(r, options.interval * 1000));
    const rss = rssOf(child.pid!);
    if (rss === null) break;
    const minutes = (Date.now() - started) / 60_000;
    samples.push({ minutes, rssMB: rss });
    process.stdout.write(`\r  ${minutes.toFixed(1)} min: ${rss.toFixed(0)} MB   `);
  }
  if (running) child.kill('SIGINT');
  const code = await exited;
  process.stdout.write('\n');
  if (code !== 0 && code !== 130 && samples.length === 0) throw new Error(`roformer pretrain exited with code ${code}`);

  const report: SoakReport = { date: new Date().toISOString(), command: command.slice(1), minutes: options.minutes, settleMinutes: options.settle, samples, ...summariseSoak(samples, options.settle) };
  console.log(
    `resident memory: ${report.settledMB.toFixed(0)} MB at ${options.settle} min, ${report.finalMB.toFixed(0)} MB at the end, ` +
      `max ${report.maxMB.toFixed(0)} MB; growth after ${options.settle} min: ${(report.growthAfterSettle * 100).toFixed(1)}%`,
  );
  if (options.json) await writeFile(options.json, JSON.stringify(report, null, 2) + '\n');
  if (options.svg) await writeFile(options.svg, soakSvg(report));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(`soak: ${(error as Error).message}`);
    process.exit(1);
  });
}
