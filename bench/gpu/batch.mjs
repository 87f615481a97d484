// The deterministic MLM batches of the GPU check's programs (steps.mjs, static-step.mjs, graph-check.mjs).
const { tensor } = await import('../../dist/lib/index.js');

/** A deterministic MLM batch: 15% of the positions are targets, replaced by [MASK] = 4. */
export function mlmBatch(vocab, rows, length, salt = 0) {
  const ids = new Int32Array(rows * length);
  const positions = [];
  const targets = [];
  for (let i = 0; i < ids.length; i++) {
    const id = 5 + ((i * 7919 + salt * 104729) % (vocab - 5));
    if ((i * 2654435761 + salt) % 100 < 15) {
      positions.push(i);
      targets.push(id);
      ids[i] = 4;
    } else ids[i] = id;
  }
  return {
    inputIds: tensor(ids, [rows, length], 'int64'),
    targetPositions: tensor(Int32Array.from(positions), [positions.length], 'int64'),
    targetIds: tensor(Int32Array.from(targets), [targets.length], 'int64'),
  };
}

