// CUDA-graph steps (issue 19 item 2) against eager ones: same losses, and the time of each
// (bench/gpu/check.sh phase graphs). The trainer option is `cudaGraphs`; without it the phase
// is skipped.
const { compareSteps } = await import('./compare-steps.mjs');
await compareSteps({ feature: 'CUDA graphs', option: { cudaGraphs: true }, issue: 'issue 19 item 2' });
