// `roformer init <dir>`: a freshly initialised model dir (config.json + model.safetensors).

import { Command } from 'commander';

import { MODEL_SIZES, type ModelSize } from '../model/config.js';
import { addArchitectureFlags, splitArchitectureFlags, type ArchitectureFlags } from './architecture-options.js';

export function initCommand(): Command {
  const command = new Command('init')
    .description('write a freshly initialised RoFormerV2 (or, with --arch gau-alpha, GAU-α) model dir (config.json + model.safetensors)')
    .argument('<dir>', 'output directory')
    .option('--size <size>', `model size: ${Object.keys(MODEL_SIZES).join(', ')}`, 'small')
    .option('--seed <n>', 'random seed', '0');
  return addArchitectureFlags(command)
    .action(async (dir: string, options: { size: string; seed: string } & ArchitectureFlags) => {
      if (!(options.size in MODEL_SIZES)) throw new Error(`unknown --size '${options.size}': use small, base or large`);
      const { createEncoder } = await import('../model/model.js');
      const { model: config } = splitArchitectureFlags(options);
      const model = createEncoder({ size: options.size as ModelSize, config, seed: Number(options.seed) });
      await model.save(dir);
      console.log(`wrote ${dir} (${(model.parameterCount / 1e6).toFixed(1)}M parameters)`);
    });
}
