// CUDA-graph steps (issue 19 item 2) against eager ones (bench/gpu/check.sh phase graphs): two
// trainers from the same weights, given the same batches, one with cudaGraphs and one without
// (both the static step): the same losses and weight updates (bf16 tolerance), every graph step
// after the first two of a shape a replay, and the median step time of each. Without the
// trainer option `cudaGraphs` in this build, the phase is skipped.
const { compareSteps } = await import('./compare-steps.mjs');

/** A shape's first step runs eagerly, its second is captured, every later one replays the graph. */
function checkStep(result, index, options) {
  if (!options.cudaGraphs) return;
  const expected = index === 0 ? undefined : index === 1 ? 'captured' : 'replayed';
  if (result.cudaGraph !== expected) {
    console.error(`FAIL: graph step ${index} ran ${result.cudaGraph ?? 'eagerly'}, expected ${expected ?? 'eagerly'} (is there a "CUDA graph capture failed" line above?)`);
    process.exit(1);
  }
}

await compareSteps({ feature: 'CUDA graphs', option: { cudaGraphs: true }, issue: 'issue 19 item 2', compareWeights: true, checkStep, steps: 20 });
