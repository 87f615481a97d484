#!/usr/bin/env node
// The `roformer` command. `--help` works without libtorch: the addon is loaded
// only by the commands that need it.

import { readFileSync } from 'node:fs';

import { Command } from 'commander';

import { NativeLoadError } from '../bindings/load.js';
import { runtimeInfo } from './runtime.js';
import { MODEL_SIZES, type ModelSize } from './config.js';
import { RoFormerV2 } from './model.js';

const program = new Command();
program.name('roformer').description('Train and use RoFormerV2 language models on libtorch').version('0.1.0');

program
  .command('info')
  .description('show libtorch version, devices, threads and BLAS (a quick health check)')
  .option('--build-config', 'also print libtorch build configuration')
  .action((options: { buildConfig?: boolean }) => {
    const info = runtimeInfo();
    console.log(`libtorch        ${info.libtorchVersion}`);
    console.log(`CUDA            ${info.cudaAvailable ? `${info.cudaDeviceCount} device(s)` : 'not available'}`);
    console.log(`fused attention ${info.fusedAttention ? 'yes (scaled_dot_product_attention)' : 'no (plain math)'}`);
    console.log(`threads         ${info.numThreads} of ${info.availableCores} available cores`);
    console.log(`BLAS            ${blasInUse(info.buildConfig)}`);
    if (options.buildConfig) console.log(`\n${info.buildConfig}\n${info.parallelInfo}`);
  });

program
  .command('init')
  .description('write a freshly initialised RoFormerV2 model dir (config.json + model.safetensors)')
  .argument('<dir>', 'output directory')
  .option('--size <size>', `model size: ${Object.keys(MODEL_SIZES).join(', ')}`, 'small')
  .option('--seed <n>', 'random seed', '0')
  .action(async (dir: string, options: { size: string; seed: string }) => {
    if (!(options.size in MODEL_SIZES)) throw new Error(`unknown --size '${options.size}': use small, base or large`);
    const model = RoFormerV2.create({ size: options.size as ModelSize, seed: Number(options.seed) });
    await model.save(dir);
    console.log(`wrote ${dir} (${(model.parameterCount / 1e6).toFixed(1)}M parameters)`);
  });

/**
 * The BLAS actually loaded: Debian's libtorch says "generic" and uses whatever
 * libblas.so.3 points at, which is the reference BLAS (~15× slower) unless
 * OpenBLAS is installed; the process's own memory map tells which it got.
 */
function blasInUse(buildConfig: string): string {
  const configured = /BLAS_INFO=(\w+)/.exec(buildConfig)?.[1] ?? 'unknown';
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    const libraries = [...new Set(maps.split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((p) => /blas|mkl/i.test(p)))];
    if (libraries.length > 0) {
      const warning = libraries.some((p) => /openblas|mkl|blis/i.test(p)) ? '' : '  (reference BLAS: install libopenblas0-pthread)';
      return `${configured}: ${libraries.join(', ')}${warning}`;
    }
  } catch {
    // not Linux: only the build configuration is known
  }
  return configured;
}

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(error instanceof NativeLoadError ? error.message : `roformer: ${(error as Error).message}`);
  process.exit(1);
});
