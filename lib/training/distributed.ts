// Data-parallel training: one process per rank, on libtorch's c10d (native/distributed.h).
//
//   const settings = distributedFromEnv();            // torchrun's RANK, WORLD_SIZE, … (null: one process)
//   const group = await Distributed.init(settings);    // TCPStore rendezvous, Gloo (CPU) / NCCL (CUDA)
//   new Trainer(model, { distributed: group, … });     // gradients summed over the ranks each step
//   runTraining(trainer, stage, { distributed: group, … })  // rank 0 alone writes
//
// Every rank builds the same model and trains on its own shard of the data; the
// launcher (lib/cli/launch.ts) starts the ranks of one machine.

import { loadNative } from '../../bindings/load.js';
import type { Device, NativeProcessGroup } from '../../bindings/native.js';
import { manualSeed } from '../model/runtime.js';

/** One rank's place in a data-parallel run: torchrun's names. */
export interface DistributedSettings {
  /** This process's rank, 0 … worldSize − 1 (RANK). */
  rank: number;
  /** Ranks in all (WORLD_SIZE). */
  worldSize: number;
  /** Rank on this machine (LOCAL_RANK): picks the GPU. */
  localRank: number;
  /** Where rank 0 hosts the rendezvous (MASTER_ADDR, MASTER_PORT). */
  masterAddr: string;
  masterPort: number;
  /** How long to wait for the other ranks before failing (ROFORMER_DIST_TIMEOUT, default 60 s). */
  timeoutSeconds: number;
  /** gloo, nccl or auto (NCCL on CUDA) (ROFORMER_DIST_BACKEND). */
  backend: 'auto' | 'gloo' | 'nccl';
}

export class DistributedError extends Error {
  override name = 'DistributedError';
}

/** The rendezvous defaults (torchrun's), for a rank's environment and the launcher's flags alike. */
export const DISTRIBUTED_DEFAULTS = {
  masterAddr: '127.0.0.1',
  masterPort: 29500,
  timeoutSeconds: 60,
  backend: 'auto',
} as const satisfies Omit<DistributedSettings, 'rank' | 'worldSize' | 'localRank'>;

export const DISTRIBUTED_BACKENDS: readonly DistributedSettings['backend'][] = ['auto', 'gloo', 'nccl'];

function integer(env: NodeJS.ProcessEnv, name: string, fallback?: number): number {
  const text = env[name];
  if (text === undefined || text === '') {
    if (fallback === undefined) throw new DistributedError(`${name} is not set (the environment has WORLD_SIZE, so every rank needs ${name})`);
    return fallback;
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new DistributedError(`${name} must be an integer, got '${text}'`);
  return value;
}

/**
 * The rank's settings from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
 * MASTER_ADDR, MASTER_PORT; plus ROFORMER_DIST_TIMEOUT, ROFORMER_DIST_BACKEND); null
 * when WORLD_SIZE is not set (a run of one process).
 */
export function distributedFromEnv(env: NodeJS.ProcessEnv = process.env): DistributedSettings | null {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === '') return null;
  const worldSize = integer(env, 'WORLD_SIZE');
  const rank = integer(env, 'RANK');
  if (worldSize < 1) throw new DistributedError(`WORLD_SIZE must be >= 1, got ${worldSize}`);
  if (rank < 0 || rank >= worldSize) throw new DistributedError(`RANK ${rank} is outside [0, WORLD_SIZE = ${worldSize})`);
  const timeoutSeconds = Number(env.ROFORMER_DIST_TIMEOUT ?? DISTRIBUTED_DEFAULTS.timeoutSeconds);
  if (!(timeoutSeconds > 0)) throw new DistributedError(`ROFORMER_DIST_TIMEOUT must be a number of seconds > 0, got '${env.ROFORMER_DIST_TIMEOUT}'`);
  const backend = (env.ROFORMER_DIST_BACKEND ?? DISTRIBUTED_DEFAULTS.backend) as DistributedSettings['backend'];
  if (!DISTRIBUTED_BACKENDS.includes(backend)) throw new DistributedError(`ROFORMER_DIST_BACKEND must be auto, gloo or nccl, got '${backend}'`);
  return {
    rank,
    worldSize,
    localRank: integer(env, 'LOCAL_RANK', rank),
    masterAddr: env.MASTER_ADDR || DISTRIBUTED_DEFAULTS.masterAddr,
    masterPort: integer(env, 'MASTER_PORT', DISTRIBUTED_DEFAULTS.masterPort),
    timeoutSeconds,
    backend,
  };
}

/** A rank's process group, with what the run loop and the stages need of it. */
export class Distributed {
  private constructor(
    readonly native: NativeProcessGroup,
    readonly settings: DistributedSettings,
  ) {}

  /** Joins the other ranks: resolves once all `worldSize` have (or rejects after the timeout, naming the missing ones). */
  static async init(settings: DistributedSettings, device = 'cpu'): Promise<Distributed> {
    const native = await loadNative().createProcessGroup({ ...settings, device });
    return new Distributed(native, settings);
  }

  get rank(): number {
    return this.settings.rank;
  }
  get worldSize(): number {
    return this.settings.worldSize;
  }
  /** Rank 0 writes checkpoints, metrics, the report and the progress. */
  get isWriter(): boolean {
    return this.settings.rank === 0;
  }
  /** This rank's shard of the data. */
  get shard(): Shard {
    return { rank: this.rank, worldSize: this.worldSize };
  }

  allReduce(values: number[], op: 'sum' | 'min' | 'max' = 'sum'): Promise<number[]> {
    return this.native.allReduce(values, op);
  }
  /** Every rank's value (JSON), by rank. */
  async allGather<T>(value: T): Promise<T[]> {
    return (await this.native.allGather(JSON.stringify(value ?? null))).map((text) => JSON.parse(text) as T);
  }
  barrier(): Promise<void> {
    return this.native.barrier();
  }
  shutdown(): Promise<void> {
    return this.native.shutdown();
  }
}

/** Which part of the data a rank trains on. */
export interface Shard {
  rank: number;
  worldSize: number;
}

/**
 * The data position a multi-rank checkpoint saves: every rank's own position, so a
 * resumed run with the same world size continues exactly.
 */
export interface RankedDataPosition {
  worldSize: number;
  ranks: unknown[];
}

export function isRankedPosition(position: unknown): position is RankedDataPosition {
  return typeof position === 'object' && position !== null && Array.isArray((position as RankedDataPosition).ranks) &&
    typeof (position as RankedDataPosition).worldSize === 'number';
}

/** This rank's position from a checkpoint's, or a clear error when the world size changed. */
export function positionForRank(saved: unknown, worldSize: number, rank: number, checkpoint: string): unknown {
  const savedWorld = isRankedPosition(saved) ? saved.worldSize : 1;
  if (savedWorld !== worldSize) {
    throw new DistributedError(
      `${checkpoint} was saved by a run of ${savedWorld} rank${savedWorld > 1 ? 's' : ''}; resuming it with ${worldSize} would not continue ` +
        `the data exactly: resume with the same world size (--nproc-per-node × --nnodes = ${savedWorld})`,
    );
  }
  return isRankedPosition(saved) ? saved.ranks[rank] : saved;
}

/** A training stage's place in a run: its device and, data-parallel, its process group. */
export interface RankPlace {
  /** The device to train on: with ranks, `cuda` means this rank's GPU, cuda:LOCAL_RANK. */
  device: Device;
  /** The process group (undefined: one process). */
  dist: Distributed | undefined;
  /** Whether the group was joined here, and so is the stage's to shut down. */
  joined: boolean;
}

/**
 * Where a stage (pre-training, fine-tuning, multi-task training) trains: the device of
 * this rank and its process group, joined here from the settings unless already joined.
 * Each rank after the first gets its own dropout stream (seed + 7919·rank); the weights
 * themselves come from rank 0 at the first step.
 */
export async function joinRanks(given: DistributedSettings | Distributed | null | undefined, device: Device, seed: number): Promise<RankPlace> {
  if (!given) return { device, dist: undefined, joined: false };
  const settings = given instanceof Distributed ? given.settings : given;
  const rankDevice: Device = device === 'cuda' ? `cuda:${settings.localRank}` : device;
  const dist = given instanceof Distributed ? given : await Distributed.init(settings, rankDevice);
  if (dist.rank > 0) manualSeed(seed + 7919 * dist.rank);
  return { device: rankDevice, dist, joined: !(given instanceof Distributed) };
}

/**
 * The end of a stage on its rank: every rank waits for the others (rank 0 hosts the
 * rendezvous store, so it must not leave while another still uses it), then the group
 * joined by joinRanks() is shut down.
 */
export async function leaveRanks(place: RankPlace, finished: boolean): Promise<void> {
  const dist = place.dist;
  if (!dist) return;
  place.dist = undefined; // once: a stage's `finally` may call this again after a failure
  if (finished) await dist.barrier();
  if (place.joined) await dist.shutdown().catch(() => undefined);
}
