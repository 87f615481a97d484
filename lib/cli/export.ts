// `roformer export`: a model for inference outside this package. One format so far:
// ONNX, in the folder layout transformers.js reads (see lib/export/onnx-export.ts),
// with the MLM head or, with --head, one classification or multilabel task head.

import { Command, Option } from 'commander';

import type { ExportedHead } from '../export/onnx-export.js';
import type { readHeads } from '../training/heads.js';

/** The kinds whose head is [CLS] → Linear, which the exported graph computes. */
const EXPORTABLE_KINDS = ['classification', 'multilabel'];

/** --head's task from a model dir's heads, or an error naming what there is. */
function chooseHead(dir: string, task: string, heads: Awaited<ReturnType<typeof readHeads>>): ExportedHead {
  if (!heads) throw new Error(`--head ${task}: ${dir} has no task heads (no heads.json); leave --head out to export the MLM model`);
  const spec = heads.specs[task];
  if (!spec) throw new Error(`--head ${task}: ${dir} has no head of that name (its heads: ${Object.keys(heads.specs).join(', ')})`);
  if (!EXPORTABLE_KINDS.includes(spec.kind)) {
    throw new Error(`--head ${task}: a ${spec.kind} head does not export yet; only ${EXPORTABLE_KINDS.join(' and ')} heads ([CLS] → linear) do`);
  }
  const weightName = `heads.${task}.classifier.weight`;
  const weight = heads.state[weightName];
  if (!weight) throw new Error(`--head ${task}: ${dir}/heads.safetensors has no tensor ${weightName}`);
  const labels = spec.labels ?? Array.from({ length: spec.numLabels }, (_, i) => `LABEL_${i}`);
  return { task, multiLabel: spec.kind === 'multilabel', labels, weight };
}

export function exportCommand(): Command {
  return new Command('export')
    .description('write a model for other runtimes: --format onnx writes the folder transformers.js and onnxruntime load')
    .argument('<model>', 'a model dir, checkpoint dir or run dir (its latest checkpoint), with its vocab.txt')
    .addOption(new Option('--format <format>', 'what to write').choices(['onnx']).makeOptionMandatory())
    .requiredOption('--out <dir>', 'the folder to write (config.json, tokenizer.json, tokenizer_config.json, vocab.txt, onnx/model.onnx)')
    .option('--head <task>', "a fine-tuned model's classification or multilabel head to end the graph with, instead of the MLM head")
    .action(async (path: string, options: { format: 'onnx'; out: string; head?: string }) => {
      const { loadEncoder } = await import('../training/model-source.js');
      const { readHeads } = await import('../training/heads.js');
      const { exportOnnx } = await import('../export/onnx-export.js');
      const { model, tokenizer, dir } = await loadEncoder(path, 'the export writes tokenizer.json from it');
      const heads = await readHeads(dir);
      try {
        const head = options.head === undefined ? undefined : chooseHead(dir, options.head, heads);
        if (!head && heads) {
          console.error(`roformer export: ${dir} has task heads (${Object.keys(heads.specs).join(', ')}); exporting the MLM model (--head <task> exports one of them)`);
        }
        const { files, modelBytes } = await exportOnnx(model, tokenizer, options.out, head);
        const size = modelBytes < 2 ** 20 ? `${(modelBytes / 2 ** 10).toFixed(1)} KiB` : `${(modelBytes / 2 ** 20).toFixed(1)} MiB`;
        console.log(`wrote ${options.out}: ${files.join(', ')} (${size} of ONNX${head ? `, head ${head.task}` : ''})`);
      } finally {
        model.dispose();
        for (const t of Object.values(heads?.state ?? {})) t.dispose();
      }
    });
}
