// `roformer embed`: sentence embeddings for a file of texts, to .npy or JSONL; with
// --fit-whitening, a BERT-whitening fitted on them and saved (beside the model by default).

import { join } from 'node:path';

import { Command } from 'commander';

import { writeFileAtomic } from '../util/atomic-file.js';
import { existingFile, fraction, oneOf, outputFile, positiveInteger, integerAtLeast, text, SettingError } from '../util/value-kinds.js';
import { POOLINGS, type Pooling } from '../embed/sentence-encoder.js';
import { parse } from './options.js';

interface EmbedFlags {
  model: string;
  out?: string;
  format: 'auto' | 'text' | 'jsonl';
  field: string;
  pooling: Pooling;
  batchSize: number;
  maxLength: number;
  whitening?: string;
  fitWhitening?: string | true;
  k?: number;
  beta?: number;
  gamma?: number;
}

export function embedCommand(): Command {
  return new Command('embed')
    .description('sentence embeddings of a file of texts (a line each, or JSONL), to .npy or .jsonl; BERT-whitening')
    .requiredOption('--model <dir>', 'a model dir, checkpoint dir or run dir (its latest checkpoint)')
    .argument('<input>', 'texts: a sentence per line, or JSONL (.jsonl/.json; see --field)', existingInput)
    .option('--out <file>', 'where the embeddings go: .npy (float32, n × hidden) or .jsonl ({"line", "embedding"} per text)', parse(outputFile, 'out'))
    .option('--format <format>', 'input format: auto (by extension), text or jsonl', parse(oneOf(['auto', 'text', 'jsonl'] as const), 'format'), 'auto')
    .option('--field <name>', 'JSONL field holding the text', parse(text, 'field'), 'text')
    .option('--pooling <how>', `token states → one vector: ${POOLINGS.join(', ')}`, parse(oneOf(POOLINGS), 'pooling'), 'mean')
    .option('--batch-size <n>', 'texts per forward pass', parse(positiveInteger, 'batch-size'), 32)
    .option('--max-length <n>', 'tokens per text, [CLS] and [SEP] included; longer texts are cut', parse(integerAtLeast(2), 'max-length'), 512)
    .option('--whitening <file>', 'apply this whitening (from --fit-whitening) to the embeddings', parse(existingFile, 'whitening'))
    .option('--fit-whitening [file]', `fit a BERT-whitening on the input's embeddings and save it (default <model dir>/whitening.safetensors)`, parse(outputFile, 'fit-whitening'))
    .option('--k <n>', 'whitening: dimensions kept, those of largest variance (default all)', parse(positiveInteger, 'k'))
    .option('--beta <x>', 'whitening: centring, 0 (none) to 1 (subtract the mean) (default 1)', parse(fraction, 'beta'))
    .option('--gamma <x>', 'whitening: scaling, 0 (rotation only) to 1 (unit variance) (default 1)', parse(fraction, 'gamma'))
    .action(async (input: string, flags: EmbedFlags) => runEmbed(input, flags));
}

async function runEmbed(input: string, flags: EmbedFlags): Promise<void> {
  if (flags.whitening && flags.fitWhitening) throw new SettingError('--whitening and --fit-whitening cannot be used together: fit one, then apply it');
  if (!flags.out && !flags.fitWhitening) throw new SettingError('--out is required (or --fit-whitening to fit a whitening)');
  const outFormat = flags.out ? outputFormatOf(flags.out) : undefined;
  const whiteningSettings = { k: flags.k, beta: flags.beta, gamma: flags.gamma };
  if (!flags.whitening && !flags.fitWhitening && Object.values(whiteningSettings).some((v) => v !== undefined)) {
    throw new SettingError('--k, --beta and --gamma set a whitening: use them with --whitening or --fit-whitening');
  }

  const { readTexts, formatOf } = await import('../embed/read-texts.js');
  const { SentenceEncoder } = await import('../embed/sentence-encoder.js');
  const { Whitening, WHITENING_FILE } = await import('../embed/whitening.js');

  const texts = await readTexts(input, flags.format === 'auto' ? formatOf(input) : flags.format, flags.field);
  // Checked before the model runs, so a bad whitening file costs nothing.
  let whitening = flags.whitening ? await Whitening.load(flags.whitening, whiteningSettings) : undefined;
  if (whitening?.pooling && whitening.pooling !== flags.pooling) {
    throw new SettingError(`${flags.whitening} was fitted on ${whitening.pooling} pooling; pass --pooling ${whitening.pooling} (or fit one for ${flags.pooling})`);
  }

  const { resolveModelDir } = await import('../training/model-source.js');
  const modelDir = await resolveModelDir(flags.model);
  const encoder = await SentenceEncoder.fromPretrained(modelDir);
  try {
    if (flags.fitWhitening && flags.k !== undefined && flags.k > encoder.dimension) {
      throw new SettingError(`--k must be at most the model's hidden size ${encoder.dimension}, got ${flags.k}`);
    }
    if (whitening && whitening.inputDimension !== encoder.dimension) {
      throw new SettingError(`${flags.whitening} was fitted on ${whitening.inputDimension}-dimensional embeddings, but the model's are ${encoder.dimension}`);
    }
    const started = Date.now();
    const progress = await progressBar(texts.length);
    let rows: Float32Array[];
    let truncated = 0;
    try {
      rows = await encoder.embed(
        texts.map((t) => t.text),
        {
          pooling: flags.pooling,
          batchSize: flags.batchSize,
          maxLength: flags.maxLength,
          onProgress: (p) => {
            truncated = p.truncated;
            progress.update(p.done);
          },
        },
      );
    } finally {
      progress.stop();
    }
    const seconds = (Date.now() - started) / 1000;
    console.error(`embedded ${rows.length} texts (${flags.pooling} pooling, ${encoder.dimension} dims) in ${seconds.toFixed(1)}s: ${(rows.length / seconds).toFixed(1)} texts/s`);
    if (truncated > 0) console.error(`note: ${truncated} text(s) longer than --max-length ${flags.maxLength} tokens were cut`);

    if (flags.fitWhitening) {
      const path = flags.fitWhitening === true ? join(modelDir, WHITENING_FILE) : flags.fitWhitening;
      whitening = Whitening.fit(rows, { ...whiteningSettings, pooling: flags.pooling });
      await whitening.save(path);
      console.error(`whitening fitted on ${rows.length} embeddings (k ${whitening.k}, beta ${whitening.beta}, gamma ${whitening.gamma}) → ${path}`);
    }
    if (whitening) rows = whitening.apply(rows);
    if (flags.out) {
      const columns = rows[0]!.length;
      if (outFormat === 'npy') {
        const { npyChunks } = await import('../embed/npy.js');
        await writeFileAtomic(flags.out, npyChunks(rows, columns));
      } else {
        await writeFileAtomic(flags.out, jsonlChunks(rows, texts.map((t) => t.line)));
      }
      console.error(`wrote ${rows.length} × ${columns} → ${flags.out}`);
    }
  } finally {
    encoder.dispose();
  }
}

function existingInput(path: string): string {
  if (!existingFile.accepts(path)) throw new SettingError(`<input> must be ${existingFile.description}, got '${path}'`);
  return path;
}

function outputFormatOf(path: string): 'npy' | 'jsonl' {
  if (/\.npy$/i.test(path)) return 'npy';
  if (/\.jsonl?$/i.test(path)) return 'jsonl';
  throw new SettingError(`--out must end in .npy or .jsonl, got '${path}'`);
}

/** A line per text: its input line and its vector (each value to float32's 9 significant digits). */
function* jsonlChunks(rows: Float32Array[], lines: number[]): Generator<string> {
  for (let i = 0; i < rows.length; i++) {
    const values = Array.from(rows[i]!, (v) => Number(v.toPrecision(9)));
    yield `${JSON.stringify({ line: lines[i], embedding: values })}\n`;
  }
}

/** A bar on stderr when it is a terminal; nothing otherwise (the summary line follows). */
async function progressBar(total: number): Promise<{ update(done: number): void; stop(): void }> {
  if (!process.stderr.isTTY) return { update: () => {}, stop: () => {} };
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    { format: 'embed {value}/{total} |{bar}| {percentage}% | ETA {eta_formatted}', hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { update: (done) => bar.update(done), stop: () => bar.stop() };
}
