// The kinds of value a setting can hold, each with its one check and its one way of
// saying what it wants. The CLI parses flags with them (lib/cli/options.ts: the error
// names the flag) and every stage checks its config with them at its entry (the error
// names the key): one set of limits for both.

import { existsSync, statSync } from 'node:fs';

/** A bad setting: the message names it (the flag, or the config key and its source). */
export class SettingError extends Error {
  override name = 'SettingError';
}

export interface ValueKind<T> {
  /** What the value must be, completing "… must be ": 'an integer >= 1'. */
  readonly description: string;
  /** Whether a value (from JSON, a program or a parsed flag) is of this kind. */
  accepts(value: unknown): value is T;
  /** A flag's text as a value (undefined when it is not even of the right type). */
  fromText(text: string): unknown;
}

const asNumber = (text: string): unknown => (text.trim() === '' ? text : Number(text));
const asText = (text: string): unknown => text;

function numeric(description: string, ok: (n: number) => boolean, integer: boolean): ValueKind<number> {
  return {
    description,
    accepts: (v): v is number => typeof v === 'number' && Number.isFinite(v) && (!integer || Number.isInteger(v)) && ok(v),
    fromText: asNumber,
  };
}

export const positiveInteger = numeric('an integer >= 1', (n) => n >= 1, true);
export const nonNegativeInteger = numeric('a non-negative integer', (n) => n >= 0, true);
/** Any integer (a seed). */
export const integer = numeric('an integer', () => true, true);
export const integerAtLeast = (min: number) => numeric(`an integer >= ${min}`, (n) => n >= min, true);
export const positiveNumber = numeric('a number > 0', (n) => n > 0, false);
export const nonNegativeNumber = numeric('a non-negative number', (n) => n >= 0, false);
/** A probability that must leave room for both outcomes (a masking rate). */
export const probability = numeric('a number between 0 and 1 (exclusive)', (n) => n > 0 && n < 1, false);
/** A share of something, none of it up to all of it (a warm-up fraction). */
export const fraction = numeric('a number from 0 to 1', (n) => n >= 0 && n <= 1, false);
/** A share held out of something that must keep the rest (an evaluation fraction). */
export const heldOutFraction = numeric('a number from 0 up to (not including) 1', (n) => n >= 0 && n < 1, false);

/** One of `values`; the message lists `first` (a stage's default) first. */
export const oneOf = <T extends string>(values: readonly T[], first?: T): ValueKind<T> => ({
  description: `one of ${(first ? [first, ...values.filter((v) => v !== first)] : values).join(', ')}`,
  accepts: (v): v is T => values.includes(v as T),
  fromText: asText,
});

export const text: ValueKind<string> = {
  description: 'a non-empty string',
  accepts: (v): v is string => typeof v === 'string' && v !== '',
  fromText: asText,
};

/**
 * The JSON field names in a comma-separated list ('sentence,sentence1,sentence2'; 'data.text'
 * names a nested field); null when the list is empty or names an empty field or path segment.
 */
export function fieldNames(list: string): string[] | null {
  const names = list.split(',').map((name) => name.trim());
  return names.every((name) => name !== '' && name.split('.').every((segment) => segment !== '')) ? names : null;
}

/** JSONL fields holding text: one name or several separated by commas (see fieldNames). */
export const fieldList: ValueKind<string> = {
  description: "one or more JSON field names separated by commas ('sentence,sentence1,sentence2'; 'data.text' for a nested field)",
  accepts: (v): v is string => typeof v === 'string' && fieldNames(v) !== null,
  fromText: asText,
};

export const boolean: ValueKind<boolean> = {
  description: 'true or false',
  accepts: (v): v is boolean => typeof v === 'boolean',
  fromText: (t) => (t === 'true' ? true : t === 'false' ? false : t),
};

/** A switch given as on or off (true or false in a config file); null lets the default decide. */
export const onOffOrDefault: ValueKind<boolean | null> = {
  description: 'on or off (true or false in a config file)',
  accepts: (v): v is boolean | null => v === null || typeof v === 'boolean',
  fromText: (t) => (t === 'on' ? true : t === 'off' ? false : t),
};

/** An input file that exists and is not a directory (FIFOs and devices are the readers' to judge). */
export const existingFile: ValueKind<string> = {
  description: 'an existing file (not a directory)',
  accepts: (v): v is string => typeof v === 'string' && v !== '' && existsSync(v) && !statSync(v).isDirectory(),
  fromText: asText,
};

/**
 * An output file: not an existing directory. Its parent directory need not exist:
 * the writer creates it (as --out run directories are created).
 */
export const outputFile: ValueKind<string> = {
  description: 'a file path (not a directory)',
  accepts: (v): v is string => typeof v === 'string' && v !== '' && !/[/\\]$/.test(v) && !(existsSync(v) && statSync(v).isDirectory()),
  fromText: asText,
};

/** The value, checked: a SettingError "<name> must be <kind>, got <value>" otherwise. */
export function checkValue<T>(kind: ValueKind<T>, value: unknown, name: string): T {
  if (!kind.accepts(value)) throw new SettingError(`${name} must be ${kind.description}, got ${JSON.stringify(value)}`);
  return value;
}

/** Every key of `config` that `kinds` names, checked; `name` turns a key into what the user wrote (a flag, 'run.json: lr'). */
export function checkSettings<C extends object>(config: C, kinds: { readonly [K in keyof C]?: ValueKind<unknown> }, name: (key: string) => string): C {
  for (const [key, kind] of Object.entries(kinds) as Array<[keyof C & string, ValueKind<unknown> | undefined]>) {
    const value = config[key];
    if (kind && value !== undefined) checkValue(kind, value, name(key));
  }
  return config;
}

/** camelCase key → its flag: maxSteps → --max-steps. */
export const flagOf = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
