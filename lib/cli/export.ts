// `roformer export`: a model for inference outside this package. One format so far:
// ONNX, in the folder layout transformers.js reads (see lib/export/onnx-export.ts).

import { Command, Option } from 'commander';

export function exportCommand(): Command {
  return new Command('export')
    .description('write a model for other runtimes: --format onnx writes the folder transformers.js and onnxruntime load')
    .argument('<model>', 'a model dir, checkpoint dir or run dir (its latest checkpoint), with its vocab.txt')
    .addOption(new Option('--format <format>', 'what to write').choices(['onnx']).makeOptionMandatory())
    .requiredOption('--out <dir>', 'the folder to write (config.json, tokenizer.json, tokenizer_config.json, vocab.txt, onnx/model.onnx)')
    .action(async (path: string, options: { format: 'onnx'; out: string }) => {
      const { loadEncoder } = await import('../training/model-source.js');
      const { exportOnnx } = await import('../export/onnx-export.js');
      const { model, tokenizer } = await loadEncoder(path, 'the export writes tokenizer.json from it');
      try {
        const { files, modelBytes } = await exportOnnx(model, tokenizer, options.out);
        const size = modelBytes < 2 ** 20 ? `${(modelBytes / 2 ** 10).toFixed(1)} KiB` : `${(modelBytes / 2 ** 20).toFixed(1)} MiB`;
        console.log(`wrote ${options.out}: ${files.join(', ')} (${size} of ONNX)`);
      } finally {
        model.dispose();
      }
    });
}
