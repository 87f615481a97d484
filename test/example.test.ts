// The README's snippet (examples/mlm-logits.ts) runs as documented.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect, it } from 'vitest';

it('examples/mlm-logits writes a model dir, loads it and prints MLM logits', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'roformer-example-')), 'my-model');
  const output = execFileSync(process.execPath, ['dist/examples/mlm-logits.js', dir], { encoding: 'utf8' });
  expect(output).toMatch(/hidden \[1,6,384\], logits \[1,12000\]/);
  expect(output).toMatch(/top-5 token ids at the \[MASK\]: \d+, \d+, \d+, \d+, \d+/);
  // a second run loads the saved dir and gives the same answer
  expect(execFileSync(process.execPath, ['dist/examples/mlm-logits.js', dir], { encoding: 'utf8' })).toBe(output);
});
