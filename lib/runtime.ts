// Process-wide libtorch settings and facts: versions, devices, threads, seeding.

import { loadNative } from '../bindings/load.js';
import type { RuntimeInfo } from '../bindings/native.js';

export type { RuntimeInfo } from '../bindings/native.js';

/** libtorch version, CUDA availability, threads, BLAS and build configuration. */
export function runtimeInfo(): RuntimeInfo {
  return loadNative().runtimeInfo();
}

/**
 * Intra-op threads libtorch uses. The default is one per available core (or the
 * ROFORMER_NUM_THREADS environment variable); Debian's libtorch alone would use 1.
 */
export function setNumThreads(n: number): void {
  loadNative().setNumThreads(n);
}

/** Seeds libtorch's global generators (dropout, random init). */
export function manualSeed(seed: number): void {
  loadNative().manualSeed(seed);
}

export function cudaAvailable(): boolean {
  return loadNative().runtimeInfo().cudaAvailable;
}
