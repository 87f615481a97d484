// `roformer convert`: a model dir whose weights are pytorch_model.bin (the PyTorch
// port's releases) rewritten as the safetensors model dir this package saves:
// config.json, vocab.txt, model.safetensors. The weights go through the same strict
// check as any model dir load, so what is written is known to load.

import { Command } from 'commander';

import { VOCAB_FILE } from '../model/model-dir.js';

export function convertCommand(): Command {
  return new Command('convert')
    .description('write a model dir (pytorch_model.bin or model.safetensors) as config.json, vocab.txt and model.safetensors')
    .argument('<dir>', 'a model dir: config.json, vocab.txt and pytorch_model.bin')
    .requiredOption('--out <dir>', 'the model dir to write')
    .action(async (dir: string, options: { out: string }) => {
      const { copyFile, mkdir } = await import('node:fs/promises');
      const { existsSync } = await import('node:fs');
      const { join } = await import('node:path');
      const { readModelDir, writeModelDir } = await import('../model/model-dir.js');

      const { config, state } = await readModelDir(dir);
      try {
        await mkdir(options.out, { recursive: true });
        await writeModelDir(options.out, config, state);
      } finally {
        for (const t of Object.values(state)) t.dispose();
      }
      const files = ['config.json', 'model.safetensors'];
      if (existsSync(join(dir, VOCAB_FILE))) {
        await copyFile(join(dir, VOCAB_FILE), join(options.out, VOCAB_FILE));
        files.push(VOCAB_FILE);
      } else {
        console.error(`roformer convert: ${dir} has no vocab.txt, so ${options.out} has none either`);
      }
      console.log(`wrote ${options.out}: ${files.join(', ')} (${Object.keys(state).length} tensors)`);
    });
}
