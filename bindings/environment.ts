// Typed access to scripts/libtorch.cjs: what this machine has for roformer-v2 (the libtorch
// installations found, the prebuilt flavours and whether each matches, the build tools, the
// commands that fix what is missing). That file is plain CommonJS so the npm install hook can
// use it before the TypeScript is compiled; this module loads it synchronously.

import { createRequire } from 'node:module';
import { join } from 'node:path';

export interface LibtorchInstall {
  /** The lib directory holding libtorch_cpu.so. */
  where: string;
  source: 'LIBTORCH' | 'LD_LIBRARY_PATH' | 'system' | 'python3 torch';
  /** '1.13' (from the soname), '2.1.0+cu121' (pip), … */
  version?: string;
  /** major.minor: what a prebuilt must match. */
  abi?: string;
  cuda: boolean;
  libraries: string[];
  /** The directory of TorchConfig.cmake when the headers are there too (a build from source can use it). */
  cmakeConfig?: string;
}

export interface PrebuiltManifest {
  flavour: string;
  platform: string;
  arch: string;
  file: string;
  libtorch: {
    version: string;
    abi: string;
    cuda: boolean;
    /** major.minor of the CUDA toolkit it was built with ('12.4'); CUDA flavours only. */
    cudaVersion?: string;
    sonames: string[];
    debianPackage?: string;
    pip?: string;
    builtFrom?: string;
  };
  napi: number;
  glibc?: string;
  glibcxx?: string;
  needed?: string[];
  runpath?: string;
  builtOn?: string;
  builtWith?: string;
  package?: string;
  sha256?: string;
  builtAt?: string;
}

export interface PrebuiltFlavour {
  name: string;
  dir: string;
  file: string;
  manifest?: PrebuiltManifest;
  /** Why this flavour is not used here; undefined when it matches. */
  reason?: string;
  /** The libtorch it matches. */
  match?: LibtorchInstall;
}

export interface BuildTools {
  cmake?: string;
  compiler?: string;
  libtorchDev?: { where: string; source: string; version?: string; cuda?: boolean };
}

export interface EnvironmentModule {
  ADDON_FILE: string;
  MANIFEST_FILE: string;
  PLATFORM: string;
  findLibtorch(options?: { python?: boolean }): LibtorchInstall[];
  prebuiltFlavours(root: string, libtorch?: LibtorchInstall[]): { platformDir: string; flavours: PrebuiltFlavour[]; otherPlatforms: string[] };
  flavourMismatch(manifest: PrebuiltManifest | undefined, libtorch: LibtorchInstall[], dir?: string): string | undefined;
  buildTools(options?: { python?: boolean }): BuildTools;
  sourceBuildFix(tools: BuildTools): string[];
  runtimeFixFor(manifest: PrebuiltManifest | undefined): string | undefined;
  aptCommand(packages: string[]): string;
  describeLibtorch(lt: LibtorchInstall): string;
  glibcVersion(): string | undefined;
  isDebianLike(): boolean;
  osRelease(): Record<string, string>;
}

// Why this layer reaches into scripts/ (and through createRequire): the same probing runs in
// `npm install` (scripts/install.mjs), before any TypeScript is compiled, so it must be plain
// JavaScript that the install hook can load; moving it into TypeScript would leave the install
// hook without it. It is a leaf (it imports nothing of lib/ or bindings/), so no arrow points up.
const cache = new Map<string, EnvironmentModule>();

/** scripts/libtorch.cjs of the package at `root`. */
export function environment(root: string): EnvironmentModule {
  let module = cache.get(root);
  if (!module) {
    module = createRequire(import.meta.url)(join(root, 'scripts', 'libtorch.cjs')) as EnvironmentModule;
    cache.set(root, module);
  }
  return module;
}
