// The deterministic MLM batches of the GPU check's programs (steps.mjs, static-step.mjs, graph-check.mjs).
const { tensor } = await import('../../dist/lib/index.js');

/** Target slots per batch: fixed for a shape (as the data pipeline's), so that step shapes repeat. */
const slotsFor = (rows, length) => Math.ceil((0.2 * rows * length) / 8) * 8;

/**
 * A deterministic MLM batch: about 15% of the positions are targets, replaced by [MASK] = 4, in
 * a fixed number of target slots for the shape (unused slots: target id -100, ignored).
 */
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
  const slots = slotsFor(rows, length);
  if (positions.length > slots) throw new Error(`mlmBatch: ${positions.length} targets exceed the ${slots} slots`);
  while (positions.length < slots) {
    positions.push(0);
    targets.push(-100);
  }
  return {
    inputIds: tensor(ids, [rows, length], 'int64'),
    targetPositions: tensor(Int32Array.from(positions), [positions.length], 'int64'),
    targetIds: tensor(Int32Array.from(targets), [targets.length], 'int64'),
  };
}

