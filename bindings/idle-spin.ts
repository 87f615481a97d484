// Two thread pools share the cores in a CPU training step: OpenBLAS's workers run the matrix
// products, libtorch's OpenMP threads (and our fused kernels, which use the same OpenMP runtime)
// run the element-wise work between them. Each pool, when its work ends, keeps its threads
// spinning for a while before they sleep, and on a machine whose cores they fill the spinning
// threads of one pool take the cores from the other's working threads:
//
// - OpenBLAS spins on sched_yield for 2^28 cycles (OPENBLAS_THREAD_TIMEOUT=28). With its minimum,
//   2^4, on the 2-core CI machine (small model, 8 × 512, 2 threads) a step took 2.5 s instead of
//   2.6–3.0 s, with 10% less CPU time and 40% fewer context switches.
//
// GNU OpenMP also spins (300,000 iterations, GOMP_SPINCOUNT) and is left as it is: a 1024 × 384 ·
// 384 × 1536 product took 7.8 ms right after a parallel ReLU instead of 4.1 ms with the spin cut
// to 1,000 (the spinning threads held both cores), but whole training steps did not show it
// reliably: small fp32 8 × 128 steps were 3–6% faster with 1,000 in a three-round comparison and
// 2% slower (median of eight rounds, alternating) an hour later on the same, by then busier,
// machine (bench `--seq 128 --steps 10`, 2026-12-01). A spin count is yours to set
// (GOMP_SPINCOUNT, OMP_WAIT_POLICY) before the addon loads.
//
// OpenBLAS reads its variable once, when it loads, which is when the addon loads: the loader
// calls this first. A value the user set is kept.

/** The timeout the loader sets when the user has not: OpenBLAS's minimum, 2^4 cycles of spinning. */
export const OPENBLAS_THREAD_TIMEOUT = '4';

/** Sets OPENBLAS_THREAD_TIMEOUT in `env` (the process's own by default) unless it is set already. */
export function shortenIdleSpin(env: NodeJS.ProcessEnv = process.env): void {
  if (env.OPENBLAS_THREAD_TIMEOUT === undefined || env.OPENBLAS_THREAD_TIMEOUT === '') {
    env.OPENBLAS_THREAD_TIMEOUT = OPENBLAS_THREAD_TIMEOUT;
  }
}
