// `roformer init <dir>`: a freshly initialised model dir (config.json + model.safetensors).

import { Command } from 'commander';

import { MODEL_SIZES, type ModelSize } from '../model/config.js';

export function initCommand(): Command {
  return new Command('init')
    .description('write a freshly initialised RoFormerV2 model dir (config.json + model.safetensors)')
    .argument('<dir>', 'output directory')
    .option('--size <size>', `model size: ${Object.keys(MODEL_SIZES).join(', ')}`, 'small')
    .option('--seed <n>', 'random seed', '0')
    .action(async (dir: string, options: { size: string; seed: string }) => {
      if (!(options.size in MODEL_SIZES)) throw new Error(`unknown --size '${options.size}': use small, base or large`);
      const { RoFormerV2 } = await import('../model/model.js');
      const model = RoFormerV2.create({ size: options.size as ModelSize, seed: Number(options.seed) });
      await model.save(dir);
      console.log(`wrote ${dir} (${(model.parameterCount / 1e6).toFixed(1)}M parameters)`);
    });
}
