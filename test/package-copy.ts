// A copy of the package as an install without the addon would have it: package.json,
// dist/, the libtorch finder, node_modules (linked); no build/, no prebuilds/. The
// loader and install tests run the CLI from it to see what a user without the addon sees.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A new folder under `parent` (named `prefix…`) holding that copy; dist/ must be built. */
export function copyPackageWithoutAddon(parent: string, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(parent, prefix));
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  fs.cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'scripts'));
  fs.copyFileSync(path.join(ROOT, 'scripts', 'libtorch.cjs'), path.join(dir, 'scripts', 'libtorch.cjs'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}
