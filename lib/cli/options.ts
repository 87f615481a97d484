// Option parsing shared by the commands. Commander hands every flag over as a
// string; parse() turns it into a checked value of one of the shared kinds
// (lib/util/value-kinds.ts: the same limits the stages check their configs with),
// with an error that names the flag.

import { flagOf, SettingError, type ValueKind } from '../util/value-kinds.js';

/**
 * A flag's parser: `.option('--steps <n>', '…', parse(positiveInteger, 'steps'))`. A bad
 * value throws a SettingError, or the error `refuse` makes of the message (the benchmarks
 * hand commander its InvalidArgumentError).
 */
export const parse =
  <T>(kind: ValueKind<T>, flag: string, refuse: (message: string) => Error = (message) => new SettingError(message)) =>
  (text: string): T => {
    const value = kind.fromText(text);
    if (!kind.accepts(value)) throw refuse(`--${flag} must be ${kind.description}, got '${text}'`);
    return value;
  };

/** Help text that shows a default owned elsewhere: 'learning rate (default 0.0005)'. */
export const withDefault = (help: string, value: unknown): string => `${help} (default ${String(value)})`;

/**
 * The flags of a stage's settings, declared from its tables: the flag from the key
 * (maxLength → --max-length), the parser from its kind, the default shown from its
 * defaults. `.option(...setting('maxLength', '<n>', 'tokens per sample'))`.
 */
export function settingFlags<C extends object>(defaults: Partial<C>, kinds: { readonly [K in keyof C]?: ValueKind<unknown> }) {
  return (key: keyof C & string, argument: string, help: string, showDefault = true): [string, string, (text: string) => unknown] => {
    const flag = flagOf(key);
    const value = showDefault ? defaults[key] : undefined;
    const kind = kinds[key];
    if (!kind) throw new Error(`settingFlags: no kind for '${key}'`); // a programming error, caught by --help in the tests
    return [`${flag} ${argument}`, value === undefined ? help : withDefault(help, value), parse(kind, flag.slice(2))];
  };
}
