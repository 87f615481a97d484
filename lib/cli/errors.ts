// How a failed command ends: one line on stderr and exit status 1. A missing or
// broken native addon explains itself (what was tried, how to fix it) and is
// printed as it is; anything else is prefixed with the program's name.

import { NativeLoadError } from '../../bindings/load.js';

export function exitWithError(error: unknown): never {
  console.error(error instanceof NativeLoadError ? error.message : `roformer: ${(error as Error)?.message ?? String(error)}`);
  process.exit(1);
}
