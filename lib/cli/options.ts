// Option parsing shared by the commands. Commander hands every flag over as a
// string; these turn them into checked values with errors that name the flag.

/** A parser for a numeric flag: `.option('--steps <n>', '…', number('steps'))`. */
export const number = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${value}'`);
  return n;
};
