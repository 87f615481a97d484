// OpenBLAS's worker threads, after each matrix product, spin on sched_yield for 2^28 cycles
// before they sleep (its default OPENBLAS_THREAD_TIMEOUT=28). libtorch's own intra-op threads
// (OpenMP) run the element-wise kernels between the products on the same cores, so on a machine
// whose cores they fill the spinning workers take time from them. With the shortest timeout
// (2^4 cycles) the workers sleep at once and wake on the next product: on the 2-core CI machine
// (small model, batch 8 × 512, 2 threads) a training step took 2.5 s instead of 2.6–3.0 s, 10%
// less CPU time and 40% fewer context switches. OpenBLAS reads the variable once, when it loads,
// which is when the addon loads: the loader calls this first. A value the user set is kept.

/** The timeout the loader sets when the user has not: OpenBLAS's minimum, 2^4 cycles of spinning. */
export const OPENBLAS_THREAD_TIMEOUT = '4';

/** Sets OPENBLAS_THREAD_TIMEOUT in `env` (the process's own by default) unless it is set already. */
export function shortenBlasSpin(env: NodeJS.ProcessEnv = process.env): void {
  if (env.OPENBLAS_THREAD_TIMEOUT === undefined || env.OPENBLAS_THREAD_TIMEOUT === '') {
    env.OPENBLAS_THREAD_TIMEOUT = OPENBLAS_THREAD_TIMEOUT;
  }
}
