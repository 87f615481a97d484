// Two thread pools share the cores in a CPU training step: OpenBLAS's workers run the matrix
// products, libtorch's OpenMP threads (and our fused kernels, which use the same OpenMP runtime)
// run the element-wise work between them. Each pool, when its work ends, keeps its threads
// spinning for a while before they sleep, and on a machine whose cores they fill the spinning
// threads of one pool take the cores from the other's working threads:
//
// - OpenBLAS spins on sched_yield for 2^28 cycles (OPENBLAS_THREAD_TIMEOUT=28). With its minimum,
//   2^4, on the 2-core CI machine (small model, 8 × 512, 2 threads) a step took 2.5 s instead of
//   2.6–3.0 s, with 10% less CPU time and 40% fewer context switches.
// - GNU OpenMP spins 300,000 iterations (GOMP_SPINCOUNT). A 1024 × 384 · 384 × 1536 product took
//   7.8 ms right after a parallel ReLU instead of 4.1 ms with the spin cut (the spinning threads
//   held both cores); in the training step, GOMP_SPINCOUNT=1000 took small fp32 8 × 128 steps from
//   375–401 ms to 369–371 ms (RoFormerV2) and 405–421 to 389–398 ms (the baseline), three rounds
//   each, alternating (bench `--seq 128 --steps 10`, 2026-12-01 on the 2-core machine).
//   Sleeping at once (OMP_WAIT_POLICY=passive) was no better than 1,000 spins: each parallel
//   region then starts with a wake-up.
//
// Both libraries read their variable once, when they load, which is when the addon loads: the
// loader calls this first. A value the user set is kept, as is any OMP_WAIT_POLICY (which
// GNU OpenMP lets decide the spinning when GOMP_SPINCOUNT is unset).

/** What the loader sets where the user has not: the variable, its value, and the variables that keep it unset. */
export const IDLE_SPIN_DEFAULTS: ReadonlyArray<{ name: string; value: string; unlessSet: string[] }> = [
  { name: 'OPENBLAS_THREAD_TIMEOUT', value: '4', unlessSet: ['OPENBLAS_THREAD_TIMEOUT'] },
  { name: 'GOMP_SPINCOUNT', value: '1000', unlessSet: ['GOMP_SPINCOUNT', 'OMP_WAIT_POLICY'] },
];

/** Shortens OpenBLAS's and OpenMP's idle spinning in `env` (the process's own by default), keeping what the user set. */
export function shortenIdleSpin(env: NodeJS.ProcessEnv = process.env): void {
  for (const { name, value, unlessSet } of IDLE_SPIN_DEFAULTS) {
    if (unlessSet.every((variable) => env[variable] === undefined || env[variable] === '')) env[name] = value;
  }
}
