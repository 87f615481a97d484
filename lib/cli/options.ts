// Option parsing shared by the commands. Commander hands every flag over as a
// string; parse() turns it into a checked value of one of the shared kinds
// (lib/util/value-kinds.ts: the same limits the stages check their configs with),
// with an error that names the flag.

import { SettingError, type ValueKind } from '../util/value-kinds.js';

/** A flag's parser: `.option('--steps <n>', '…', parse(positiveInteger, 'steps'))`. */
export const parse =
  <T>(kind: ValueKind<T>, flag: string) =>
  (text: string): T => {
    const value = kind.fromText(text);
    if (!kind.accepts(value)) throw new SettingError(`--${flag} must be ${kind.description}, got '${text}'`);
    return value;
  };

/** Help text that shows a default owned elsewhere: 'learning rate (default 0.0005)'. */
export const withDefault = (help: string, value: unknown): string => `${help} (default ${String(value)})`;
