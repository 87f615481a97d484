// One model's training loop in a process of its own (bench/memory.ts starts it):
// warm-up + timed steps with fresh random batches, then the process's peak
// resident memory as one JSON line on stdout.
//
//   node dist/bench/memory-child.js '{"model":"roformer-v2","size":"small","seq":128,"batch":8,...}'

import { resolveConfig } from '../lib/model/config.js';
import { setNumThreads } from '../lib/model/runtime.js';
import { makeRunner, randomBatch } from './harness.js';
import { residentMemory, type MemoryJob, type MemoryResult } from './memory.js';

const job = JSON.parse(process.argv[2] ?? '{}') as MemoryJob;
if (job.threads) setNumThreads(job.threads);
const config = resolveConfig({ size: job.size, ...job.config });
const runner = makeRunner(job.model, { ...job, seqs: [job.seq] }, config);
const total = job.warmup + job.steps;
for (let i = 0; i < total; i++) {
  const batch = randomBatch(job.batch, job.seq, config.vocab_size, job.targetFraction, 1000 + i);
  await runner.step(batch);
  for (const t of Object.values(batch)) t.dispose();
}
const { peakBytes, currentBytes } = residentMemory();
const result: MemoryResult = { model: job.model, seq: job.seq, batch: job.batch, steps: total, peakRssBytes: peakBytes, rssAfterBytes: currentBytes };
console.log(JSON.stringify(result));
