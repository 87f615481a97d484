// `roformer vocab`: a BERT-style vocab.txt built from a corpus.

import { Command } from 'commander';

import { PRETRAIN_DEFAULTS as D, PRETRAIN_KINDS as K } from '../pretrain/config.js';
import { parse } from './options.js';

export function vocabCommand(): Command {
  return new Command('vocab')
    .description('build a BERT-style vocab.txt from a corpus')
    .requiredOption('--corpus <paths...>', 'corpus files or directories')
    .requiredOption('--out <file>', 'where to write vocab.txt')
    .option('--size <n>', 'number of tokens', parse(K.vocabSize, 'size'), D.vocabSize)
    .option('--format <format>', 'auto, text or jsonl', parse(K.format, 'format'), D.format)
    .option('--field <name>', 'JSONL field holding the text', D.field)
    .action(async (options: { corpus: string[]; out: string; size: number; format: 'auto' | 'text' | 'jsonl'; field: string }) => {
      const { Corpus } = await import('../data/corpus.js');
      const { buildCorpusVocab } = await import('../pretrain/pretrain.js');
      const corpus = await Corpus.open({ paths: options.corpus, format: options.format, field: options.field, evalFraction: 0 });
      const tokenizer = await buildCorpusVocab(corpus, options.size);
      await tokenizer.save(options.out);
      console.log(`wrote ${options.out}: ${tokenizer.size} tokens`);
      if (corpus.problemCount > 0) {
        console.error(`note: ${corpus.problemCount} bad line(s) skipped, e.g. ${corpus.problems.slice(0, 3).map((p) => `${p.file}:${p.line}: ${p.reason}`).join('; ')}`);
      }
    });
}
