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

import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { constants } from 'node:os';

import { DEFAULT_DIST_TIMEOUT, DEFAULT_MASTER_PORT } from '../training/distributed.js';

export interface LaunchFlags {
  nprocPerNode?: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  distTimeout?: number;
  distBackend?: string;
}

const FLAGS: Record<string, keyof LaunchFlags> = {
  '--nproc-per-node': 'nprocPerNode',
  '--nnodes': 'nnodes',
  '--node-rank': 'nodeRank',
  '--master-addr': 'masterAddr',
  '--master-port': 'masterPort',
  '--dist-timeout': 'distTimeout',
  '--dist-backend': 'distBackend',
};
const TEXT_FLAGS = new Set<keyof LaunchFlags>(['masterAddr', 'distBackend']);
export const DISTRIBUTED_COMMANDS = new Set(['pretrain', 'finetune', 'multitask']);

export class LaunchError extends Error {
  override name = 'LaunchError';
}

/** Takes the launcher's flags out of `argv` (`--flag value` or `--flag=value`). */
export function extractLaunchFlags(argv: readonly string[]): { argv: string[]; flags: LaunchFlags } {
  const rest: string[] = [];
  const flags: LaunchFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const key = FLAGS[name];
    if (!key || arg === '--') {
      rest.push(arg);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new LaunchError(`${name} needs a value`);
    if (TEXT_FLAGS.has(key)) {
      (flags as Record<string, unknown>)[key] = value;
    } else {
      const n = Number(value);
      const ok = key === 'distTimeout' ? n > 0 : Number.isSafeInteger(n) && n >= (key === 'nodeRank' ? 0 : 1);
      if (!ok) throw new LaunchError(`${name} must be ${key === 'distTimeout' ? 'a number of seconds > 0' : key === 'nodeRank' ? 'an integer >= 0' : 'an integer >= 1'}, got '${value}'`);
      (flags as Record<string, unknown>)[key] = n;
    }
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
  const timeout = Number(env.ROFORMER_DIST_TIMEOUT ?? DEFAULT_DIST_TIMEOUT);
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
        MASTER_ADDR: env.MASTER_ADDR ?? '127.0.0.1',
        MASTER_PORT: env.MASTER_PORT ?? String(DEFAULT_MASTER_PORT),
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
    const grace = Number(env.ROFORMER_DIST_TIMEOUT ?? DEFAULT_DIST_TIMEOUT) + 30;
    setTimeout(() => process.exit(1), grace * 1000).unref();
  }, everyMs);
  timer.unref();
}
