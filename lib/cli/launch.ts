// The data-parallel launcher, with torchrun's names:
//
//   roformer pretrain|finetune|multitask --nproc-per-node N [--nnodes M --node-rank R
//       --master-addr A --master-port P] [--dist-timeout S] [--dist-backend gloo|nccl] …
//
// spawns N ranks of the same command on this machine, each with torchrun's environment
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and its share
// of the cores (ROFORMER_NUM_THREADS); forwards Ctrl-C to every rank (each stops at the
// same step, with a checkpoint); and when a rank dies, waits for the others to stop (they
// notice within the timeout), stops any that do not, and exits non-zero naming the rank.
// A rank whose launcher disappears (killed with SIGKILL, say) stops as after Ctrl-C
// (watchLauncher). Without --nproc-per-node the same flags only set that environment for this one process
// (a rank started by hand, or by torchrun / Slurm / Kubernetes, which set it themselves).
//
// The flags are declared on each of those commands (addLaunchFlags), so their --help shows
// them; a rank the launcher starts gets the command line without them (extractLaunchFlags)
// and their settings through its environment.

import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { constants } from 'node:os';

import type { Command } from 'commander';

import { DISTRIBUTED_BACKENDS, DISTRIBUTED_DEFAULTS } from '../training/distributed.js';
import { nonNegativeInteger, oneOf, positiveInteger, positiveNumber, text, type ValueKind } from '../util/value-kinds.js';
import { parse, withDefault } from './options.js';

export interface LaunchFlags {
  nprocPerNode?: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  distTimeout?: number;
  distBackend?: string;
}

/** Each launcher flag: its key, kind, help and default (the rendezvous defaults are distributed.ts's). */
const FLAGS: Record<string, { key: keyof LaunchFlags; kind: ValueKind<unknown>; value: string; help: string; default?: unknown }> = {
  '--nproc-per-node': { key: 'nprocPerNode', kind: positiveInteger, value: '<n>', help: 'data-parallel: start n ranks of this command on this machine (torchrun\'s name)' },
  '--nnodes': { key: 'nnodes', kind: positiveInteger, value: '<n>', help: 'data-parallel: machines taking part', default: 1 },
  '--node-rank': { key: 'nodeRank', kind: nonNegativeInteger, value: '<r>', help: 'data-parallel: this machine\'s index among --nnodes', default: 0 },
  '--master-addr': { key: 'masterAddr', kind: text, value: '<host>', help: 'data-parallel: rank 0\'s address (MASTER_ADDR)', default: DISTRIBUTED_DEFAULTS.masterAddr },
  '--master-port': { key: 'masterPort', kind: positiveInteger, value: '<port>', help: 'data-parallel: rank 0\'s rendezvous port (MASTER_PORT)', default: DISTRIBUTED_DEFAULTS.masterPort },
  '--dist-timeout': { key: 'distTimeout', kind: positiveNumber, value: '<s>', help: 'data-parallel: seconds to wait for the other ranks', default: DISTRIBUTED_DEFAULTS.timeoutSeconds },
  '--dist-backend': { key: 'distBackend', kind: oneOf(DISTRIBUTED_BACKENDS), value: '<name>', help: 'data-parallel: gloo, nccl or auto (NCCL on CUDA)', default: DISTRIBUTED_DEFAULTS.backend },
};
export const DISTRIBUTED_COMMANDS = new Set(['pretrain', 'finetune', 'multitask']);

export class LaunchError extends Error {
  override name = 'LaunchError';
}

/** Declares the launcher's flags on a command that can run data-parallel (pretrain, finetune, multitask). */
export function addLaunchFlags(command: Command): Command {
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const name = flag.slice(2);
    command.option(`${flag} ${spec.value}`, spec.default === undefined ? spec.help : withDefault(spec.help, spec.default), parse(spec.kind, name));
  }
  return command;
}

/**
 * The launcher's part of a data-parallel command: with --nproc-per-node, start the ranks
 * and resolve with the exit code the launcher ends with; otherwise set this process's
 * rank environment from the flags, watch the launcher, and resolve null (run here).
 */
export async function launchIfAsked(flags: LaunchFlags): Promise<number | null> {
  if (flags.nprocPerNode !== undefined) return launch(extractLaunchFlags(process.argv).argv, flags);
  Object.assign(process.env, launchEnv(flags, {}));
  watchLauncher();
  return null;
}

/**
 * A data-parallel command's action: the launcher's part first (launchIfAsked), then
 * `action` with the command's own flags (the launcher's taken out) on this rank.
 */
export function asRank<F extends object>(action: (flags: F) => Promise<void>): (flags: F & LaunchFlags) => Promise<void> {
  return async (flags) => {
    const launcher = Object.fromEntries(Object.values(FLAGS).map((f) => [f.key, flags[f.key]])) as LaunchFlags;
    const code = await launchIfAsked(launcher);
    if (code !== null) {
      process.exitCode = code;
      return;
    }
    const own = Object.fromEntries(Object.entries(flags).filter(([key]) => !(key in launcher))) as F;
    await action(own);
  };
}

/** Takes the launcher's flags out of `argv` (`--flag value` or `--flag=value`): a rank's command line. */
export function extractLaunchFlags(argv: readonly string[]): { argv: string[]; flags: LaunchFlags } {
  const rest: string[] = [];
  const flags: LaunchFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const spec = FLAGS[name];
    if (!spec || arg === '--') {
      rest.push(arg);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new LaunchError(`${name} needs a value`);
    (flags as Record<string, unknown>)[spec.key] = parse(spec.kind, name.slice(2))(value);
  }
  return { argv: rest, flags };
}

/** The environment the flags stand for (for one rank; the launcher adds RANK and the rest). */
export function launchEnv(flags: LaunchFlags, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...env,
    ...(flags.masterAddr !== undefined ? { MASTER_ADDR: flags.masterAddr } : {}),
    ...(flags.masterPort !== undefined ? { MASTER_PORT: String(flags.masterPort) } : {}),
    ...(flags.distTimeout !== undefined ? { ROFORMER_DIST_TIMEOUT: String(flags.distTimeout) } : {}),
    ...(flags.distBackend !== undefined ? { ROFORMER_DIST_BACKEND: flags.distBackend } : {}),
  };
}

const describeExit = (code: number | null, signal: NodeJS.Signals | null) =>
  signal ? `was killed by ${signal}` : `exited with code ${code}`;

/**
 * Runs `argv` (node, script, command, …) as N ranks; resolves with the exit code the
 * launcher should end with.
 */
export async function launch(argv: readonly string[], flags: LaunchFlags, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<number> {
  const command = argv[2];
  if (!command || !DISTRIBUTED_COMMANDS.has(command)) {
    throw new LaunchError(`--nproc-per-node is for ${[...DISTRIBUTED_COMMANDS].join(', ')}${command ? `, not '${command}'` : ''}`);
  }
  const n = flags.nprocPerNode!;
  const nnodes = flags.nnodes ?? 1;
  const nodeRank = flags.nodeRank ?? 0;
  if (nodeRank >= nnodes) throw new LaunchError(`--node-rank ${nodeRank} must be below --nnodes ${nnodes}`);
  const world = n * nnodes;
  const env = launchEnv(flags);
  const timeout = Number(env.ROFORMER_DIST_TIMEOUT ?? DISTRIBUTED_DEFAULTS.timeoutSeconds);
  // Intra-op threads: the machine's cores split among its ranks, unless set explicitly.
  const threads = env.ROFORMER_NUM_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / n)));

  const children: Array<{ rank: number; child: ChildProcess; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }> = [];
  let failure: { rank: number; pid: number; how: string; code: number } | null = null;
  let interrupted = false;
  let stopTimer: NodeJS.Timeout | null = null;
  const stopOthers = (signal: NodeJS.Signals) => children.forEach(({ child }) => child.exitCode === null && child.signalCode === null && child.kill(signal));

  for (let local = 0; local < n; local++) {
    const rank = nodeRank * n + local;
    // Its own process group: a terminal's Ctrl-C reaches the launcher only, which forwards it once.
    const child = spawn(process.execPath, [...process.execArgv, ...argv.slice(1)], {
      stdio: 'inherit',
      detached: true,
      env: {
        ...env,
        RANK: String(rank),
        WORLD_SIZE: String(world),
        LOCAL_RANK: String(local),
        LOCAL_WORLD_SIZE: String(n),
        GROUP_RANK: String(nodeRank),
        MASTER_ADDR: env.MASTER_ADDR ?? DISTRIBUTED_DEFAULTS.masterAddr,
        MASTER_PORT: env.MASTER_PORT ?? String(DISTRIBUTED_DEFAULTS.masterPort),
        ROFORMER_NUM_THREADS: threads,
        ROFORMER_LAUNCHER_PID: String(process.pid),
      },
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => {
        if ((code !== 0 || signal) && !failure && !interrupted) {
          failure = { rank, pid: child.pid ?? -1, how: describeExit(code, signal), code: code ?? 128 + (constants.signals[signal!] ?? 0) };
          // The others notice the lost rank at their next collective (within the timeout); then they are stopped.
          stopTimer = setTimeout(() => {
            stopOthers('SIGTERM');
            setTimeout(() => stopOthers('SIGKILL'), 5000).unref();
          }, (timeout + 15) * 1000);
          stopTimer.unref();
        }
        resolve({ code, signal });
      }),
    );
    children.push({ rank, child, exit });
  }

  const forward = (signal: NodeJS.Signals) => () => {
    interrupted = true;
    stopOthers(signal);
  };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  const killAll = () => stopOthers('SIGKILL');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('exit', killAll);
  try {
    const results = await Promise.all(children.map((c) => c.exit));
    if (stopTimer) clearTimeout(stopTimer);
    if (failure) {
      const f = failure as { rank: number; pid: number; how: string; code: number };
      log(`roformer: rank ${f.rank} (pid ${f.pid}) ${f.how}; the run stopped (world size ${world})`);
      return f.code || 1;
    }
    const bad = results.find((r) => r.code !== 0 || r.signal);
    if (bad) return bad.code ?? 130;
    return 0;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('exit', killAll);
  }
}

/**
 * In a rank started by launch(): when the launcher is gone (its pid no longer this
 * process's parent), stop as Ctrl-C would (every rank at the same step, with a
 * checkpoint); if the rank has not ended a while later, it exits. A rank can then
 * never outlive its launcher, killed with SIGKILL or not.
 */
export function watchLauncher(env: NodeJS.ProcessEnv = process.env, everyMs = 1000): void {
  const launcher = Number(env.ROFORMER_LAUNCHER_PID);
  if (!Number.isSafeInteger(launcher) || launcher <= 0 || process.ppid !== launcher) return;
  const timer = setInterval(() => {
    if (process.ppid === launcher) return;
    clearInterval(timer);
    process.stderr.write(`roformer: rank ${env.RANK ?? '?'}: the launcher (pid ${launcher}) is gone; stopping after this step\n`);
    process.kill(process.pid, 'SIGINT');
    const grace = Number(env.ROFORMER_DIST_TIMEOUT ?? DISTRIBUTED_DEFAULTS.timeoutSeconds) + 30;
    // Not process.exit (the CLI entry point's alone): the default SIGTERM ends the process.
    setTimeout(() => process.kill(process.pid, 'SIGTERM'), grace * 1000).unref();
  }, everyMs);
  timer.unref();
}
