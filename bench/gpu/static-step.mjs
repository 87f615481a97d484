// The static training step (issue 21 item 3: fixed target slots, figures read once per step)
// against the eager one on CUDA: same losses, and the time of each (bench/gpu/check.sh phase
// static-step). The trainer option is `staticStep`; without it the phase is skipped.
const { compareSteps } = await import('./compare-steps.mjs');
await compareSteps({ feature: 'the static step', option: { staticStep: true }, issue: "issue 21 item 3", compareWeights: true });
