// Process-wide libtorch settings and facts: versions, devices, threads, seeding.

import { readFileSync } from 'node:fs';

import { loadNative } from '../../bindings/load.js';
import type { RuntimeInfo } from '../../bindings/native.js';

export type { RuntimeInfo } from '../../bindings/native.js';

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

/**
 * The BLAS actually loaded: Debian's libtorch says "generic" and uses whatever
 * libblas.so.3 points at, which is the reference BLAS (~15× slower) unless
 * OpenBLAS is installed; the process's own memory map tells which it got.
 */
export function blasInUse(buildConfig: string): string {
  const configured = /BLAS_INFO=(\w+)/.exec(buildConfig)?.[1] ?? 'unknown';
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    const libraries = [...new Set(maps.split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((p) => /blas|mkl/i.test(p)))];
    if (libraries.length > 0) {
      const warning = libraries.some((p) => /openblas|mkl|blis/i.test(p)) ? '' : '  (reference BLAS: install libopenblas0-pthread)';
      return `${configured}: ${libraries.join(', ')}${warning}`;
    }
  } catch {
    // not Linux: only the build configuration is known
  }
  return configured;
}
