// One rank of the scaling benchmark (bench/scaling.ts starts them): warm-up + timed
// training steps on random batches, gradients summed over the ranks when the
// environment names a world (torchrun's RANK, WORLD_SIZE, …). Rank 0 prints its
// step times as one JSON line; every step ends with the all-reduce, so rank 0's
// time is the step's time over all ranks.
//
//   node dist/bench/scaling-child.js '{"size":"small","seq":128,"batch":8,...}'

import { resolveConfig } from '../lib/model/config.js';
import { RoFormerV2 } from '../lib/model/model.js';
import { Distributed, distributedFromEnv } from '../lib/training/distributed.js';
import { Trainer } from '../lib/training/trainer.js';
import { randomBatch } from './harness.js';
import type { ScalingJob } from './scaling.js';

const job = JSON.parse(process.argv[2] ?? '{}') as ScalingJob;
const settings = distributedFromEnv();
const dist = settings ? await Distributed.init(settings) : undefined;
const rank = dist?.rank ?? 0;
const config = resolveConfig({ size: job.size, ...job.config });
const model = RoFormerV2.create({ config, seed: 0 });
const trainer = new Trainer(model, { lr: 1e-4, precision: job.dtype, distributed: dist });
const msPerStep: number[] = [];
for (let i = 0; i < job.warmup + job.steps; i++) {
  const batch = randomBatch(job.batch, job.seq, config.vocab_size, 0.15, 1000 * rank + i);
  const start = performance.now();
  await trainer.step(batch);
  if (i >= job.warmup) msPerStep.push(performance.now() - start);
  for (const t of Object.values(batch)) t.dispose();
}
if (rank === 0) console.log(JSON.stringify({ world: dist?.worldSize ?? 1, msPerStep }));
if (dist) {
  await dist.barrier();
  await dist.shutdown();
}
