// `roformer pretrain --device cuda` at the benchmark's shape (issue 19 item 4: within 10% of
// roformer-bench's tokens/s): base model, bf16, 64 rows of 128 tokens, on a generated corpus
// (lines of 126 characters drawn from 11,995 ideographs, so the vocab built from it has the base
// model's 12,000 tokens and every row is full). The median tokens/s of the steps after the first
// ten, beside bench-128's RoFormerV2 figure when that phase ran in the same check.
//
//   node bench/gpu/pretrain-speed.mjs --json FILE [--steps 40] [--device cuda]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    json: { type: 'string' },
    steps: { type: 'string', default: '40' },
    device: { type: 'string', default: 'cuda' },
    size: { type: 'string', default: 'base' },
    batch: { type: 'string', default: '64' },
    lines: { type: 'string', default: '20000' },
  },
});
const steps = Number(values.steps);
const { loadNative } = await import('../../dist/bindings/load.js');
if (values.device.startsWith('cuda') && !loadNative().runtimeInfo().cudaAvailable) {
  console.log('skip: no CUDA device here');
  process.exit(3);
}

const work = values.json ? dirname(values.json) : mkdtempSync(join(tmpdir(), 'pretrain-speed-'));
const dir = join(work, 'pretrain-speed');
mkdirSync(dir, { recursive: true });
const corpus = join(dir, 'corpus.txt');
if (!existsSync(corpus)) {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const lines = [];
  for (let l = 0; l < Number(values.lines); l++) {
    let line = '';
    for (let c = 0; c < 126; c++) line += String.fromCodePoint(0x4e00 + Math.floor(next() * 11995));
    lines.push(line);
  }
  writeFileSync(corpus, lines.join('\n') + '\n');
}
const out = join(dir, 'run');
const args = ['dist/lib/cli.js', 'pretrain', '--corpus', corpus, '--out', out, '--size', values.size, '--max-length', '128',
  '--batch-size', values.batch, '--steps', String(steps), '--warmup-steps', '5', '--precision', 'bf16', '--device', values.device,
  '--eval-every', '0', '--save-every', '0', '--no-pack'];
console.log(`node ${args.join(' ')}`);
execFileSync(process.execPath, args, { stdio: 'inherit' });

const train = readFileSync(join(out, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((m) => m.type === 'train');
const timed = train.filter((m) => m.step > 10).map((m) => m.tokensPerSecond).sort((a, b) => a - b);
const tokensPerSecond = timed[Math.floor(timed.length / 2)];
let bench = null;
const benchFile = join(work, 'bench-128.json');
if (existsSync(benchFile)) {
  const report = JSON.parse(readFileSync(benchFile, 'utf8'));
  bench = report.results.find((r) => r.batch === Number(values.batch) && r.seq === 128)?.roformer.tokensPerSecond ?? null;
}
const ratio = bench ? tokensPerSecond / bench : null;
console.log(`roformer pretrain --device ${values.device}: ${Math.round(tokensPerSecond)} tokens/s (median of steps 11-${steps})` +
  (ratio ? `; roformer-bench ${Math.round(bench)} tokens/s: pretrain/bench ${ratio.toFixed(2)} (the issue asks >= 0.90)` : ''));
if (values.json) writeFileSync(values.json, JSON.stringify({ tokensPerSecond, benchTokensPerSecond: bench, ratio, steps, batch: Number(values.batch) }, null, 1) + '\n');
