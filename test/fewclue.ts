// Where the FewCLUE data sets are (shared/data/fewclue beside the checkout; see
// shared/data/README.md). They are real data for tests, not part of the package.
// ROFORMER_FEWCLUE points elsewhere; otherwise each folder above the checkout is
// tried, so a clone anywhere below the workspace finds the same copy.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findFewclue(): string {
  const candidates: string[] = [];
  if (process.env.ROFORMER_FEWCLUE) candidates.push(resolve(process.env.ROFORMER_FEWCLUE));
  for (let dir = resolve(dirname(fileURLToPath(import.meta.url)), '..'); ; dir = dirname(dir)) {
    candidates.push(join(dir, 'shared', 'data', 'fewclue'), join(dir, '..', 'shared', 'data', 'fewclue'));
    if (dirname(dir) === dir) break;
  }
  candidates.push('/work/shared/data/fewclue');
  const found = candidates.find((c) => existsSync(join(c, 'tnews', 'train_few_all.json')));
  if (!found) {
    throw new Error(`FewCLUE data not found (looked in ${[...new Set(candidates)].slice(0, 4).join(', ')}, …): set ROFORMER_FEWCLUE to the folder holding tnews/, iflytek/, …`);
  }
  return found;
}

export const FEWCLUE_DIR = findFewclue();
