// The host allocator (native/host_allocator.cpp): large CPU tensors come from a cache
// of mappings that the next step reuses, bounded by the peak in use, and given back by
// releaseMemory(). Numerics are unaffected: every other test runs on it.

import { spawnSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { loadNative } from '../bindings/load.js';
import { RoFormerV2, tensor, Trainer, type MicroBatch } from '../lib/index.js';
import { seededRandom } from './reference.js';

const MB = 2 ** 20;

function batch(seed: number, rows: number, seq: number, vocab: number): MicroBatch {
  const rand = seededRandom(seed);
  const ids = Array.from({ length: rows }, () => Array.from({ length: seq }, () => 5 + Math.floor(rand() * (vocab - 5))));
  const positions = ids.flatMap((_, b) => [b * seq + 1, b * seq + 7]);
  const targets = positions.map((p) => ids[Math.floor(p / seq)]![p % seq]!);
  return { inputIds: tensor(ids, undefined, 'int64'), targetPositions: tensor(positions, undefined, 'int64'), targetIds: tensor(targets, undefined, 'int64') };
}

describe('host allocator', () => {
  it('reuses the blocks of one step in the next, stays within the peak in use, and gives them back', async () => {
    const native = loadNative();
    native.releaseMemory();
    // Attention scores of 8 × 4 heads × 128² floats = 2 MiB: large blocks every step.
    const config = { vocab_size: 500, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 256 };
    const model = RoFormerV2.create({ config, seed: 1 });
    const trainer = new Trainer(model, { lr: 1e-3 });
    const b = batch(2, 8, 128, 500);
    await trainer.step(b);
    const first = native.hostCacheStats();
    expect(first.enabled).toBe(true);
    expect(first.misses).toBeGreaterThan(0);
    for (let i = 0; i < 3; i++) await trainer.step(b);
    const later = native.hostCacheStats();
    const hits = later.hits - first.hits;
    const misses = later.misses - first.misses;
    // Same shapes every step: (almost) every large block comes from the cache.
    expect(hits).toBeGreaterThan(20);
    expect(misses).toBeLessThanOrEqual(hits / 10);
    expect(later.cachedBytes).toBeGreaterThan(0);
    // Bounded: what is mapped stays within the peak in use plus 64 MiB of slack.
    expect(later.liveBytes + later.cachedBytes).toBeLessThanOrEqual(later.peakLiveBytes + 64 * MB + 1);
    native.releaseMemory();
    expect(native.hostCacheStats().cachedBytes).toBe(0);
    // Still usable after the cache is emptied.
    const result = await trainer.step(b);
    expect(Number.isFinite(result.loss)).toBe(true);
    trainer.dispose();
    model.dispose();
  });

  it('ROFORMER_HOST_CACHE=0 keeps libtorch\'s own allocator', () => {
    const script = `import { loadNative } from './dist/bindings/load.js'; console.log(JSON.stringify(loadNative().hostCacheStats()));`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ROFORMER_HOST_CACHE: '0' }, encoding: 'utf8' });
    expect(child.status, child.stderr).toBe(0);
    expect(JSON.parse(child.stdout)).toMatchObject({ enabled: false, hits: 0, misses: 0 });
  });
});
