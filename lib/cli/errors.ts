// How a failed command is reported: one line for stderr. A missing or broken native
// addon explains itself (what was tried, how to fix it) and is printed as it is;
// anything else is prefixed with the program's name. (lib/cli.ts prints it and exits 1.)

import { NativeLoadError } from '../../bindings/load.js';

export function describeError(error: unknown): string {
  return error instanceof NativeLoadError ? error.message : `roformer: ${(error as Error)?.message ?? String(error)}`;
}
