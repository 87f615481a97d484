// Running the built `roformer` command in a child process, as a user runs it
// (shared by the CLI tests).

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);
export const CLI = 'dist/lib/cli.js';

/** Runs `roformer …`; rejects when it exits non-zero. */
export const roformer = (...args: string[]) => exec(process.execPath, [CLI, ...args], { maxBuffer: 16 << 20 });

/** The failure of a command that should fail: its exit status and stderr. */
export const failure = async (...args: string[]) => {
  try {
    await roformer(...args);
  } catch (error) {
    return error as { code: number; stderr: string; stdout: string };
  }
  throw new Error(`roformer ${args.join(' ')} succeeded`);
};
