#!/usr/bin/env node
// roformer-bench: training-step (or --mode encode) throughput of RoFormerV2 and
// the RoBERTa-style baseline through one harness, optionally against PyTorch eager.
//
//   npx roformer-bench --size base --seq 128,512 --batch 8 --device cuda --dtype bf16 --json out.json --svg chart.svg

import { readFile, writeFile } from 'node:fs/promises';
import { hostname, cpus } from 'node:os';

import { Command, InvalidArgumentError } from 'commander';

import { NativeLoadError } from '../bindings/load.js';
import { MODEL_SIZES, validateConfig, type ModelSize, type RoFormerV2Config } from '../lib/model/config.js';
import { choice, nonNegativeInt, positiveInt } from './flags.js';

export interface BenchCliOptions {
  size: ModelSize;
  config?: string;
  seq: number[];
  batch: number;
  dtype: 'fp32' | 'bf16' | 'fp16';
  device: string;
  steps: number;
  warmup: number;
  threads?: number;
  mode: 'train' | 'encode';
  json?: string;
  svg?: string;
  vsPytorch?: boolean;
  /** With --vs-pytorch: also torch.compile where torch >= 2 (--no-torch-compile: eager only). */
  torchCompile: boolean;
  memory?: boolean;
  ranks?: number;
  repeats: number;
  arch: 'roformer-v2' | 'gau-alpha' | 'all';
  lengthGeneralisation?: boolean;
  countOps?: boolean;
  opDetail?: boolean;
}

const seqList = (value: string) =>
  value.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError(`--seq takes comma-separated lengths ≥ 2, got '${part}'`);
    return n;
  });

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('roformer-bench')
    .description('Training-step throughput of RoFormerV2 vs a RoBERTa-style baseline (and PyTorch eager), CPU or CUDA')
    .option('--size <size>', 'model size: small, base, large', choice('--size', Object.keys(MODEL_SIZES)), 'small')
    .option('--config <file>', 'a config.json of model keys (Hugging Face names) overriding the size')
    .option('--seq <lengths>', 'sequence lengths, comma-separated', seqList, [128, 512])
    .option('--batch <n>', 'samples per step', positiveInt('--batch'), 8)
    .option('--dtype <dtype>', 'fp32, bf16 (autocast) or fp16 (autocast + loss scaling, CUDA)', choice('--dtype', ['fp32', 'bf16', 'fp16']), 'fp32')
    .option('--device <device>', 'cpu or cuda', choice('--device', ['cpu', 'cuda']), 'cpu')
    .option('--steps <n>', 'timed steps per model and length', positiveInt('--steps'), 10)
    .option('--warmup <n>', 'untimed warm-up steps', nonNegativeInt('--warmup'), 2)
    .option('--threads <n>', 'intra-op threads (default: the available cores)', positiveInt('--threads'))
    .option('--mode <mode>', 'train (a full optimisation step) or encode (forward only)', choice('--mode', ['train', 'encode']), 'train')
    .option('--json <file>', 'write the results as JSON')
    .option('--svg <file>', 'write a bar chart')
    .option('--vs-pytorch', 'also time the same step in PyTorch eager and, where torch >= 2, under torch.compile (needs a python3 with torch)')
    .option('--no-torch-compile', 'with --vs-pytorch: PyTorch eager only (torch.compile takes minutes to trace on the CPU)')
    .option('--memory', 'also measure peak resident memory of each model\'s training loop, each in a process of its own (and PyTorch\'s, with --vs-pytorch)')
    .option('--ranks <n>', 'data-parallel scaling instead: n ranks against 1, each a process with --threads threads (default 1), RoFormerV2 only, Gloo over loopback', positiveInt('--ranks'))
    .option('--repeats <n>', 'with --ranks: (1 rank, n ranks) pairs per length; the figure is the median pair ratio', positiveInt('--repeats'), 3)
    .option('--arch <which>', 'roformer-v2 (RoFormerV2 vs the baseline), gau-alpha or all (GAU-α at the depth-equivalent, 2× the layers, beside both)', choice('--arch', ['roformer-v2', 'gau-alpha', 'all']), 'roformer-v2')
    .option('--count-ops', 'instead of timing: count the libtorch ops of one eager training step of each model (about one kernel launch each on CUDA), by phase and name (bench/op-count.ts)')
    .option('--op-detail', "with --count-ops: name each op with its inputs' dtypes and the op it ran in ('aten::add_(f32, bf16) < …')")
    .option('--length-generalisation', 'instead: pre-train small models at length 128 and report held-out MLM loss and accuracy at 128–1024 (bench/length-generalisation.ts; its own flags: npm run bench:length -- --help)');
  return program;
}

async function main(options: BenchCliOptions): Promise<void> {
  if (options.dtype === 'fp16' && options.device === 'cpu' && options.mode === 'train') {
    throw new Error('--dtype fp16 trains on CUDA only (fp16 autocast with loss scaling); use bf16 on the CPU');
  }
  if (options.memory && options.mode !== 'train') throw new Error('--memory measures training loops: use --mode train');
  let overrides: Partial<RoFormerV2Config> = {};
  if (options.config) {
    const raw = JSON.parse(await readFile(options.config, 'utf8')) as Record<string, unknown>;
    validateConfig({ ...MODEL_SIZES[options.size], ...raw }, options.config);
    overrides = raw as Partial<RoFormerV2Config>;
  }
  if (options.ranks !== undefined) return scaling(options, overrides);
  if (options.lengthGeneralisation) {
    const { main: lengthMain } = await import('./length-generalisation.js');
    // Its own defaults (steps, sizes); --json, --svg and --threads pass through.
    const passed = [...(options.json ? ['--json', options.json] : []), ...(options.svg ? ['--svg', options.svg] : []), ...(options.threads ? ['--threads', String(options.threads)] : [])];
    return lengthMain(passed);
  }
  const gauAlpha = options.arch !== 'roformer-v2';

  const { runtimeInfo, setNumThreads, blasInUse } = await import('../lib/model/runtime.js');
  const { runBenchmark } = await import('./harness.js');
  const { table, barChartSvg } = await import('./chart.js');
  const { findPythonWithTorch, hasTorchCompile, runPytorch } = await import('./pytorch.js');
  const { resolveConfig } = await import('../lib/model/config.js');

  if (options.threads) setNumThreads(options.threads);
  const info = runtimeInfo();
  if (options.device === 'cuda' && !info.cudaAvailable) {
    throw new Error(`--device cuda: CUDA is not available (libtorch ${info.libtorchVersion}, ${info.cudaDeviceCount} device(s))`);
  }
  const machine = {
    host: hostname(),
    cpu: cpus()[0]?.model ?? 'unknown',
    libtorch: info.libtorchVersion,
    device: options.device,
    cuda: info.cudaAvailable ? `${info.cudaDeviceCount} device(s)` : 'not available',
    blas: blasInUse(info.buildConfig),
    threads: info.numThreads,
    availableCores: info.availableCores,
    fusedAttention: info.fusedAttention,
    dtypes: options.device === 'cpu' ? 'fp32, bf16 (autocast)' : 'fp32, bf16, fp16',
  };
  console.log(`roformer-bench — libtorch ${machine.libtorch}, device ${machine.device}, CUDA ${machine.cuda}`);
  console.log(`  CPU ${machine.cpu}, ${machine.threads} of ${machine.availableCores} threads, BLAS ${machine.blas}`);
  console.log(`  fused attention: ${machine.fusedAttention ? 'yes' : 'no'}; dtypes: ${machine.dtypes}`);
  if (options.countOps) return countOps(options, overrides, gauAlpha);
  console.log(`  ${options.mode}, size ${options.size}${options.config ? ` + ${options.config}` : ''}, dtype ${options.dtype}, batch ${options.batch}, seq ${options.seq.join(',')}, ${options.warmup} warm-up + ${options.steps} timed steps`);

  const { results, matmulPeakFlops } = await runBenchmark(
    harnessOptions(options, overrides, gauAlpha),
    (r) => {
      console.log(`  seq ${r.seq}: RoFormerV2 ${r.roformer.msPerStep.median.toFixed(1)} ms, baseline ${r.baseline.msPerStep.median.toFixed(1)} ms${r.gauAlpha ? `, GAU-α ${r.gauAlpha.msPerStep.median.toFixed(1)} ms` : ''}`);
      const models = [r.roformer, r.baseline, ...(r.gauAlpha ? [r.gauAlpha] : [])];
      if (options.device !== 'cpu' && options.mode === 'train') {
        console.log(`    CUDA graph replays among the ${options.steps} timed steps: ${models.map((m) => `${m.model} ${m.graphReplays}`).join(', ')}`);
      }
    },
  );
  console.log(`  matmul peak measured: ${(matmulPeakFlops / 1e12).toFixed(3)} TFLOP/s (${options.dtype})`);

  let pytorch: Awaited<ReturnType<typeof runPytorch>> = [];
  let pytorchVersion: string | null = null;
  if (options.vsPytorch) {
    if (options.mode !== 'train') throw new Error('--vs-pytorch compares training steps: use --mode train');
    const found = findPythonWithTorch();
    if (!found) throw new Error('--vs-pytorch: no python3 with torch found (Debian: apt-get install python3-torch; or pip install torch)');
    pytorchVersion = found.version;
    const compile = options.torchCompile && hasTorchCompile(found.version);
    console.log(`  PyTorch ${found.version} (${found.python}), same configurations, eager${compile ? ' and torch.compile' : options.torchCompile ? ' (torch.compile needs torch >= 2)' : ''}...`);
    pytorch = runPytorch(found.python, {
      config: resolveConfig({ size: options.size, ...overrides }),
      seqs: options.seq,
      batch: options.batch,
      dtype: options.dtype,
      device: options.device,
      steps: options.steps,
      warmup: options.warmup,
      threads: info.numThreads,
      compile,
    });
  }

  console.log('\n' + table(results, pytorch, options.mode));

  let memory: MemoryReport | null = null;
  if (options.memory) {
    memory = await measureMemory(options, overrides, info.numThreads);
  }
  const title = `${options.mode === 'train' ? 'Training step' : 'Encode'}: ${options.size}, ${options.dtype}, batch ${options.batch}, ${options.device}`;
  if (options.json) {
    const report = { date: new Date().toISOString(), machine, options, matmulPeakFlops, pytorchVersion, results, pytorch, memory };
    await writeFile(options.json, JSON.stringify(report, null, 2) + '\n');
    console.log(`\nwrote ${options.json}`);
  }
  if (options.svg) {
    await writeFile(options.svg, barChartSvg(results, pytorch, title));
    console.log(`wrote ${options.svg}`);
  }
}

/** The harness's options from the command line's: 15% of the positions are MLM targets, as in pre-training. */
function harnessOptions(options: BenchCliOptions, overrides: Partial<RoFormerV2Config>, gauAlpha: boolean): import('./harness.js').BenchOptions {
  return {
    size: options.size,
    config: overrides,
    seqs: options.seq,
    batch: options.batch,
    dtype: options.dtype,
    device: options.device as 'cpu' | 'cuda',
    steps: options.steps,
    warmup: options.warmup,
    mode: options.mode,
    targetFraction: 0.15,
    gauAlpha,
  };
}

/** --count-ops: the ops of one eager training step per model and length (bench/op-count.ts). */
async function countOps(options: BenchCliOptions, overrides: Partial<RoFormerV2Config>, gauAlpha: boolean): Promise<void> {
  if (options.mode !== 'train') throw new Error('--count-ops counts training steps: use --mode train');
  const { countStepOps, countedAfter } = await import('./op-count.js');
  console.log(`  ops of one eager training step (CUDA graphs off) after ${countedAfter(options.warmup)} warm-up step(s): size ${options.size}${options.config ? ` + ${options.config}` : ''}, dtype ${options.dtype}, batch ${options.batch}, seq ${options.seq.join(',')}`);
  const counts = await countStepOps(harnessOptions(options, overrides, gauAlpha), Boolean(options.opDetail));
  for (const c of counts) {
    const phases = Object.entries(c.byPhase).map(([phase, n]) => `${phase} ${n}`).join(', ');
    console.log(`\n  seq ${c.seq}, ${c.model}: ${c.total} ops (${phases}); the most frequent:`);
    const shown = options.opDetail ? 30 : 15;
    for (const o of c.ops.slice(0, shown)) console.log(`    ${String(o.count).padStart(5)}  ${o.op}  (${o.phase})`);
    // On the CPU an op's host time is its work: where the step's time goes, op by op.
    if (options.device === 'cpu') {
      const byTime = [...c.ops].sort((a, b) => b.selfSeconds - a.selfSeconds);
      const ms = (s: number) => (1000 * s).toFixed(1).padStart(7);
      console.log(`  the step took ${ms(c.seconds)} ms (counting on); the most time (self, ms, share of the step):`);
      for (const o of byTime.slice(0, shown)) console.log(`  ${ms(o.selfSeconds)}  ${((100 * o.selfSeconds) / c.seconds).toFixed(1).padStart(4)}%  ${o.op} ×${o.count}  (${o.phase})`);
    }
  }
  if (options.json) {
    await writeFile(options.json, JSON.stringify({ date: new Date().toISOString(), options, counts }, null, 2) + '\n');
    console.log(`\nwrote ${options.json}`);
  }
}

/** --ranks: data-parallel scaling, N ranks against 1 (bench/scaling.ts). */
async function scaling(options: BenchCliOptions, overrides: Partial<RoFormerV2Config>): Promise<void> {
  if (options.device !== 'cpu' || options.mode !== 'train') throw new Error('--ranks measures CPU training steps (Gloo): use --device cpu --mode train');
  const { runScalingBenchmark } = await import('./scaling.js');
  const { runtimeInfo } = await import('../lib/model/runtime.js');
  const threads = options.threads ?? 1;
  const info = runtimeInfo();
  console.log(`roformer-bench --ranks ${options.ranks}: data-parallel scaling, ${options.ranks} ranks vs 1, ${threads} thread(s) per rank (${info.availableCores} cores), libtorch ${info.libtorchVersion}`);
  console.log(`  size ${options.size}, ${options.dtype}, batch ${options.batch} per rank, seq ${options.seq.join(',')}, ${options.warmup} warm-up + ${options.steps} timed steps, ${options.repeats} pair(s)`);
  const results = await runScalingBenchmark(
    { size: options.size, config: overrides, seqs: options.seq, batch: options.batch, dtype: options.dtype, steps: options.steps, warmup: options.warmup, ranks: options.ranks!, threads, repeats: options.repeats },
    (seq, run) =>
      console.log(`  seq ${seq}, ${run.independent ? `${run.world} independent processes` : `${run.world} rank(s)`}: ${run.msPerStep.median.toFixed(1)} ms/step, ${Math.round(run.tokensPerSecond)} tokens/s over all`),
  );
  for (const r of results) {
    console.log(`seq ${r.seq}: ${options.ranks} ranks = ${r.ratio.toFixed(2)}× the tokens/s of 1 rank (efficiency ${(100 * r.efficiency).toFixed(0)}%; pairs ${r.pairRatios.map((x) => x.toFixed(2)).join(', ')})`);
    console.log(`  this machine's ceiling, ${options.ranks} independent processes without communication: ${r.ceiling.toFixed(2)}×; data parallel reaches ${(100 * r.ratio / r.ceiling).toFixed(0)}% of it`);
  }
  if (options.json) {
    const machine = { host: hostname(), cpu: cpus()[0]?.model ?? 'unknown', libtorch: info.libtorchVersion, availableCores: info.availableCores, threadsPerRank: threads };
    await writeFile(options.json, JSON.stringify({ date: new Date().toISOString(), machine, options, results }, null, 2) + '\n');
    console.log(`\nwrote ${options.json}`);
  }
}

interface MemoryReport {
  ours: import('./memory.js').MemoryResult[];
  pytorch: import('./pytorch.js').PytorchMemoryResult[];
}

/** Peak resident memory per model and length, each training loop in its own process. */
async function measureMemory(options: BenchCliOptions, overrides: Partial<RoFormerV2Config>, threads: number): Promise<MemoryReport> {
  const { runMemoryBenchmark } = await import('./memory.js');
  const { findPythonWithTorch, runPytorchMemory } = await import('./pytorch.js');
  const { resolveConfig } = await import('../lib/model/config.js');
  const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`;
  const common = { size: options.size, config: overrides, batch: options.batch, dtype: options.dtype, device: options.device as 'cpu' | 'cuda', steps: options.steps, warmup: options.warmup, gauAlpha: options.arch !== 'roformer-v2' };
  console.log(`\npeak resident memory, each training loop in a process of its own (${options.warmup + options.steps} steps):`);
  const ours = runMemoryBenchmark({ ...common, seqs: options.seq, mode: 'train', targetFraction: 0.15, threads }, (r) =>
    console.log(`  seq ${r.seq}: ${r.model.padEnd(16)} ${mb(r.peakRssBytes)} (after the last step ${mb(r.rssAfterBytes)})`),
  );
  let pytorch: import('./pytorch.js').PytorchMemoryResult[] = [];
  if (options.vsPytorch) {
    const found = findPythonWithTorch();
    if (found) {
      pytorch = runPytorchMemory(found.python, { ...common, config: resolveConfig({ size: options.size, ...overrides }), seqs: options.seq, threads });
      for (const r of pytorch) console.log(`  seq ${r.seq}: PyTorch roformer-v2, head at ${r.head === 'full' ? 'every position' : 'the targets'}: ${mb(r.peakRssBytes)}`);
    }
  }
  return { ours, pytorch };
}

const program = buildProgram();
program.action(async (options: BenchCliOptions) => main(options));
program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(error instanceof NativeLoadError ? error.message : `roformer-bench: ${(error as Error).message}`);
  process.exit(1);
});
