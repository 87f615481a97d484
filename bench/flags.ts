// The benchmarks' flag parsers, from the library's value kinds (lib/util/value-kinds.ts):
// the same limits and wording as the `roformer` commands. Commander reports the
// InvalidArgumentError with the flag and exits 1, so a bench needs no catch of its own.

import { InvalidArgumentError } from 'commander';

import { parse } from '../lib/cli/options.js';
import { integerAtLeast, nonNegativeInteger, oneOf, positiveInteger, positiveNumber, type ValueKind } from '../lib/util/value-kinds.js';

/** A flag's parser: `.option('--steps <n>', '…', flag(positiveInteger, '--steps'), 10)`. */
export const flag = <T>(kind: ValueKind<T>, name: string) =>
  parse(kind, name.replace(/^--/, ''), (message) => new InvalidArgumentError(message));

export const positiveInt = (name: string) => flag(positiveInteger, name);
export const nonNegativeInt = (name: string) => flag(nonNegativeInteger, name);
export const intAtLeast = (min: number, name: string) => flag(integerAtLeast(min), name);
export const positiveNum = (name: string) => flag(positiveNumber, name);
export const choice = <T extends string>(name: string, allowed: readonly T[]) => flag(oneOf(allowed), name);
