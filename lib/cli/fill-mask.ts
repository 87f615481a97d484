// `roformer fill-mask`: the most likely tokens at each [MASK] of a text.

import { Command } from 'commander';

import { positiveInteger } from '../util/value-kinds.js';
import { parse } from './options.js';

export function fillMaskCommand(): Command {
  return new Command('fill-mask')
    .description('the most likely tokens at each [MASK] of a text')
    .requiredOption('--model <dir>', 'a model dir, checkpoint dir or run dir (its latest checkpoint)')
    .option('--top-k <n>', 'candidates per mask', parse(positiveInteger, 'top-k'), 5)
    .option('--json', 'machine-readable output')
    .argument('<text...>', 'text with one or more [MASK]')
    .action(async (words: string[], options: { model: string; topK: number; json?: boolean }) => {
      const { fillMask, loadForInference } = await import('../pretrain/fill-mask.js');
      const { model, tokenizer } = await loadForInference(options.model);
      const text = words.join(' ');
      const predictions = await fillMask(model, tokenizer, text, options.topK);
      if (options.json) {
        console.log(JSON.stringify({ text, predictions }, null, 2));
        return;
      }
      for (const p of predictions) {
        console.log(`[MASK] #${p.mask + 1}`);
        for (const c of p.candidates) console.log(`  ${c.token.padEnd(8)} ${(100 * c.probability).toFixed(2)}%`);
      }
    });
}
