// Data-parallel training over c10d (Gloo on the CPU, loopback): several processes on
// this machine, started as torchrun would (RANK, WORLD_SIZE, …) or by the launcher.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { extractLaunchFlags } from '../lib/cli/launch.js';
import { RoFormerV2 } from '../lib/index.js';
import { distributedFromEnv, positionForRank } from '../lib/training/distributed.js';

const WORKER = 'test/fixtures/ddp-step-worker.mjs';
const CLI = 'dist/lib/cli.js';
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `roformer-ddp-${name}-`));

/** A port nothing listens on (freed just before use). */
async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

function start(args: string[], env: Record<string, string>): { child: ChildProcess; done: Promise<Finished>; out: () => string } {
  const begin = performance.now();
  const child = spawn(process.execPath, args, { env: { ...process.env, ROFORMER_NUM_THREADS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Finished>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr, seconds: (performance.now() - begin) / 1000 })),
  );
  return { child, done, out: () => stdout };
}

const rankEnv = (rank: number, world: number, port: number, extra: Record<string, string> = {}) => ({
  RANK: String(rank),
  WORLD_SIZE: String(world),
  LOCAL_RANK: String(rank),
  MASTER_ADDR: '127.0.0.1',
  MASTER_PORT: String(port),
  ROFORMER_DIST_TIMEOUT: '20',
  ...extra,
});

const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/** A `roformer pretrain --config` file: a tiny model on a small random corpus. */
function pretrainConfig(): string {
  const corpusDir = tmp('corpus');
  const corpus = join(corpusDir, 'c.txt');
  const words = ['春', '风', '又', '绿', '江', '南', '岸', '明', '月', '何', '时', '照', '我', '还', '山', '水'];
  let seed = 3;
  const pick = () => words[(seed = (seed * 16807) % 2147483647) % words.length];
  writeFileSync(corpus, Array.from({ length: 400 }, () => Array.from({ length: 8 + (seed % 20) }, pick).join('')).join('\n') + '\n');
  const config = join(corpusDir, 'run.json');
  writeFileSync(config, JSON.stringify({
    corpus: [corpus],
    model: { num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, hidden_dropout_prob: 0.1 },
    vocabSize: 100, maxLength: 24, batchSize: 8, lr: 2e-3, warmupSteps: 2, evalEvery: 3, evalBatches: 2, evalFraction: 0.05, logEvery: 1,
  }));
  return config;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('data-parallel training', () => {
  it('2 ranks × batch 2 give the losses of 1 rank × batch 4 for 20 steps, and identical weights', async () => {
    const dir = tmp('equiv');
    const single = await start([WORKER, join(dir, 'single.json')], { STEP_GLOBAL_BATCH: '4' }).done;
    expect(single.code, single.stderr).toBe(0);
    const port = await freePort();
    const ranks = await Promise.all([0, 1].map((r) => start([WORKER, join(dir, `rank${r}.json`)], { ...rankEnv(r, 2, port), STEP_GLOBAL_BATCH: '4' }).done));
    for (const r of ranks) expect(r.code, r.stderr).toBe(0);

    const one = JSON.parse(readFileSync(join(dir, 'single.json'), 'utf8'));
    const [r0, r1] = [0, 1].map((r) => JSON.parse(readFileSync(join(dir, `rank${r}.json`), 'utf8')));
    expect(one.losses).toHaveLength(20);
    expect(r0.world).toBe(2);
    for (let s = 0; s < 20; s++) {
      expect(relative(r0.losses[s], one.losses[s]), `step ${s + 1}: ${r0.losses[s]} vs ${one.losses[s]}`).toBeLessThan(1e-5);
      expect(relative(r0.gradNorms[s], one.gradNorms[s])).toBeLessThan(1e-4);
      expect(r1.losses[s]).toBe(r0.losses[s]); // every rank reports the global loss
    }
    // The loss moved: the comparison is not between two untrained models.
    expect(one.losses[19]).toBeLessThan(one.losses[0] - 0.05);
    // Identical weights on both ranks (rank 1 started from other ones: the broadcast fixed that).
    expect(Object.keys(r0.weights).length).toBeGreaterThan(5);
    for (const name of Object.keys(r0.weights)) {
      expect(r1.weights[name], name).toEqual(r0.weights[name]);
      const diff = Math.max(...r0.weights[name].map((w: number, i: number) => Math.abs(w - one.weights[name][i])));
      expect(diff, name).toBeLessThan(1e-4);
    }
  }, 120_000);

  it.each(['unit', 'pareto'])("multi-task with '%s' gradient normalisation: 2 ranks × batch 2 = 1 rank × batch 4", async (normalization) => {
    // Each task's norm is that of its gradient over both ranks' examples (an all-reduce per task).
    const dir = tmp(`norm-${normalization}`);
    const env = { STEP_GLOBAL_BATCH: '4', STEP_COUNT: '8', STEP_NORMALIZATION: normalization };
    const single = await start([WORKER, join(dir, 'single.json')], env).done;
    expect(single.code, single.stderr).toBe(0);
    const port = await freePort();
    const ranks = await Promise.all([0, 1].map((r) => start([WORKER, join(dir, `rank${r}.json`)], { ...rankEnv(r, 2, port), ...env }).done));
    for (const r of ranks) expect(r.code, r.stderr).toBe(0);
    const one = JSON.parse(readFileSync(join(dir, 'single.json'), 'utf8'));
    const [r0, r1] = [0, 1].map((r) => JSON.parse(readFileSync(join(dir, `rank${r}.json`), 'utf8')));
    for (let s = 0; s < 8; s++) {
      expect(relative(r0.losses[s], one.losses[s]), `step ${s + 1}: ${r0.losses[s]} vs ${one.losses[s]}`).toBeLessThan(1e-5);
      // The combined gradient's norm: with per-task norms taken on one rank's half, it would differ.
      expect(relative(r0.gradNorms[s], one.gradNorms[s]), `step ${s + 1} gradient norm`).toBeLessThan(1e-4);
    }
    expect(one.losses[7]).not.toBe(one.losses[0]);
    expect(Object.keys(r0.weights).some((n) => n.startsWith('heads.topic'))).toBe(true);
    for (const name of Object.keys(r0.weights)) {
      expect(r1.weights[name], name).toEqual(r0.weights[name]);
      const diff = Math.max(...r0.weights[name].map((w: number, i: number) => Math.abs(w - one.weights[name][i])));
      expect(diff, name).toBeLessThan(1e-4);
    }
  }, 120_000);

  it('a killed rank makes the other exit within the timeout, naming it', async () => {
    const dir = tmp('kill');
    const port = await freePort();
    const env = { STEP_COUNT: '100000', STEP_LOG: '1', ROFORMER_DIST_TIMEOUT: '15' };
    const [a, b] = [0, 1].map((r) => start([WORKER, join(dir, `rank${r}.json`)], { ...rankEnv(r, 2, port), ...env }));
    // Wait until both train, then kill rank 1.
    await new Promise<void>((resolve) => {
      const check = () => (/step 3\b/.test(b!.out()) ? resolve() : setTimeout(check, 100));
      check();
    });
    const killedAt = performance.now();
    b!.child.kill('SIGKILL');
    const survivor = await a!.done;
    const waited = (performance.now() - killedAt) / 1000;
    expect(survivor.code).not.toBe(0);
    expect(survivor.stderr).toMatch(/lost rank 1\b/);
    expect(waited).toBeLessThan(15 + 10);
  }, 90_000);

  it('a busy port, a mismatched world size and a missing rank are clear errors', async () => {
    // Busy: something already listens on the master port.
    const server = createServer();
    const port = await new Promise<number>((resolve) => server.listen(0, () => resolve((server.address() as { port: number }).port)));
    try {
      const busy = await start([WORKER, join(tmp('busy'), 'x.json')], rankEnv(0, 2, port, { ROFORMER_DIST_TIMEOUT: '5' })).done;
      expect(busy.code).not.toBe(0);
      expect(busy.stderr).toMatch(/could not host the rendezvous on port \d+.*--master-port/);
    } finally {
      server.close();
    }
    // Mismatched world sizes: both sides say so.
    const port2 = await freePort();
    const [r0, r1] = await Promise.all([
      start([WORKER, join(tmp('world'), '0.json')], rankEnv(0, 2, port2, { ROFORMER_DIST_TIMEOUT: '10' })).done,
      start([WORKER, join(tmp('world'), '1.json')], rankEnv(1, 3, port2, { ROFORMER_DIST_TIMEOUT: '10' })).done,
    ]);
    expect(r0.code).not.toBe(0);
    expect(r1.code).not.toBe(0);
    expect(r1.stderr).toMatch(/rank 1 was started with world size 3 but rank 0 with 2/);
    expect(r0.stderr).toMatch(/rank 1 was started with world size 3 but rank 0 with 2/);
    // A rank that never comes: rank 0 names it after the timeout.
    const alone = await start([WORKER, join(tmp('alone'), '0.json')], rankEnv(0, 2, await freePort(), { ROFORMER_DIST_TIMEOUT: '3' })).done;
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toMatch(/timed out after 3 s: rank 1 of 2 did not join/);
  }, 90_000);

  it('the launcher runs pretrain on 2 ranks; a resumed 2-rank run continues exactly; rank 0 alone writes', async () => {
    const config = pretrainConfig();
    const pretrain = async (out: string, steps: number, extra: string[] = []) => {
      const r = await start([CLI, 'pretrain', '--nproc-per-node', '2', '--master-port', String(await freePort()), '--dist-timeout', '30',
        '--config', config, '--out', out, '--steps', String(steps), '--save-every', '3', ...extra], {}).done;
      expect(r.code, r.stderr).toBe(0);
      return r;
    };
    const metrics = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'train');

    const straight = tmp('straight');
    await pretrain(straight, 6);
    const resumed = tmp('resumed');
    await pretrain(resumed, 3);
    await pretrain(resumed, 6, ['--resume']);

    const a = metrics(straight);
    const b = metrics(resumed);
    expect(a.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]); // one writer: each step once
    expect(b.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (let i = 0; i < 6; i++) expect(b[i].loss, `step ${i + 1}`).toBe(a[i].loss);
    expect(a[0].worldSize).toBe(2);
    const state = JSON.parse(readFileSync(join(straight, 'checkpoint-6', 'trainer_state.json'), 'utf8'));
    expect(state.dataPosition.worldSize).toBe(2);
    expect(state.dataPosition.ranks).toHaveLength(2);
    expect(state.dataPosition.ranks[0].data).not.toEqual(state.dataPosition.ranks[1].data); // each rank its own shard
    expect(state.dataPosition.ranks[0].random['rng.cpu']).not.toEqual(state.dataPosition.ranks[1].random['rng.cpu']);

    // Another world size is refused with a clear message.
    const single = await start([CLI, 'pretrain', '--out', resumed, '--resume', '--steps', '8'], {}).done;
    expect(single.code).not.toBe(0);
    expect(single.stderr).toMatch(/saved by a run of 2 ranks; resuming it with 1/);
  }, 240_000);
});

describe('the launcher', () => {
  it('ranks whose launcher is killed with SIGKILL stop at the same step with a loadable checkpoint', async () => {
    const out = join(tmp('orphans'), 'run');
    const launcher = start([CLI, 'pretrain', '--nproc-per-node', '2', '--master-port', String(await freePort()), '--dist-timeout', '20',
      '--config', pretrainConfig(), '--out', out, '--steps', '100000', '--save-every', '0'], {});
    const metrics = join(out, 'metrics.jsonl');
    const trainSteps = () => (existsSync(metrics) ? readFileSync(metrics, 'utf8').split('\n').filter((l) => l.includes('"type":"train"')).length : 0);
    while (trainSteps() < 3) await new Promise((r) => setTimeout(r, 100));
    const ranks = readFileSync(`/proc/${launcher.child.pid}/task/${launcher.child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(ranks).toHaveLength(2);
    launcher.child.kill('SIGKILL');
    const killedAt = performance.now();
    while (ranks.some(alive) && performance.now() - killedAt < 30_000) await new Promise((r) => setTimeout(r, 100));
    expect(ranks.filter(alive), 'ranks still running 30 s after the launcher died').toEqual([]);
    // They stopped as after Ctrl-C: a checkpoint of the step they stopped at, loadable.
    const latest = readFileSync(join(out, 'latest'), 'utf8').trim();
    const state = JSON.parse(readFileSync(join(out, latest, 'trainer_state.json'), 'utf8'));
    expect(latest).toBe(`checkpoint-${state.globalStep ?? state.step}`);
    expect(state.dataPosition.ranks).toHaveLength(2);
    const model = await RoFormerV2.fromPretrained(join(out, latest));
    expect(model.config.num_hidden_layers).toBe(1);
  }, 120_000);
});

describe('data-parallel multi-task training', () => {
  it('the launcher runs multitask on 2 ranks (unit normalisation, MLM in the mix); resume is exact; one writer', async () => {
    const dir = tmp('mt');
    const rows = Array.from({ length: 48 }, (_, i) => JSON.stringify({ text: i % 2 ? `春风又绿江南岸${i}` : `大江东去浪淘尽${i}`, label: i % 2 ? 'spring' : 'river' }));
    writeFileSync(join(dir, 'poems.jsonl'), rows.join('\n') + '\n');
    writeFileSync(join(dir, 'corpus.txt'), Array.from({ length: 80 }, (_, i) => `明月几时有，把酒问青天。不知天上宫阙，今夕是何年。${i}`).join('\n') + '\n');
    const tasks = join(dir, 'tasks.json');
    writeFileSync(tasks, JSON.stringify({ tasks: [
      { name: 'poems', task: { kind: 'classification' }, files: { train: 'poems.jsonl', dev: 'poems.jsonl' }, weight: 2 },
      { name: 'mlm', files: { corpus: ['corpus.txt'] }, maxLength: 32 },
    ] }));
    const model = JSON.stringify({ num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64 });
    const run = async (out: string, steps: number, extra: string[] = []) => {
      const r = await start([CLI, 'multitask', '--nproc-per-node', '2', '--master-port', String(await freePort()), '--dist-timeout', '30',
        ...(extra.includes('--resume') ? [] : ['--tasks', tasks, '--model-config', model, '--vocab-size', '300', '--batch-size', '4', '--accumulate', '3', '--eval-every', '3', '--lr', '3e-3', '--warmup-steps', '2']),
        '--out', out, '--steps', String(steps), '--save-every', '3', ...extra], {}).done;
      expect(r.code, r.stderr).toBe(0);
      return r;
    };
    const trainRecords = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'train');

    const straight = join(dir, 'straight');
    const first = await run(straight, 6);
    // Rank 0 alone prints the per-task table.
    expect(first.stdout.match(/dev metrics per task/g)).toHaveLength(1);
    const resumed = join(dir, 'resumed');
    await run(resumed, 3);
    await run(resumed, 6, ['--resume']);
    const a = trainRecords(straight);
    const b = trainRecords(resumed);
    expect(a.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(b.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (let i = 0; i < 6; i++) expect(b[i].loss, `step ${i + 1}`).toBe(a[i].loss);
    expect(a[0].worldSize).toBe(2);
    const state = JSON.parse(readFileSync(join(straight, 'checkpoint-6', 'trainer_state.json'), 'utf8'));
    expect(state.dataPosition.ranks).toHaveLength(2);
    // The same task sequence on both ranks, each its own examples and documents.
    expect(state.dataPosition.ranks[0].data.sampler).toBe(state.dataPosition.ranks[1].data.sampler);
    expect(state.dataPosition.ranks[0].data.mlm).not.toEqual(state.dataPosition.ranks[1].data.mlm);
    const results = JSON.parse(readFileSync(join(straight, 'results.json'), 'utf8'));
    expect(results).toMatchObject({ steps: 6, interrupted: false });
    expect(results.tasks.poems).toHaveProperty('accuracy');
  }, 240_000);
});

describe('data-parallel settings', () => {
  it("reads torchrun's environment and the launcher's flags", () => {
    expect(distributedFromEnv({})).toBeNull();
    expect(distributedFromEnv({ WORLD_SIZE: '4', RANK: '3', LOCAL_RANK: '1', MASTER_ADDR: '10.0.0.2', MASTER_PORT: '1234' })).toEqual({
      rank: 3, worldSize: 4, localRank: 1, masterAddr: '10.0.0.2', masterPort: 1234, timeoutSeconds: 60, backend: 'auto',
    });
    expect(() => distributedFromEnv({ WORLD_SIZE: '2', RANK: '2' })).toThrow(/RANK 2 is outside/);
    expect(() => distributedFromEnv({ WORLD_SIZE: '2' })).toThrow(/RANK is not set/);
    const { argv, flags } = extractLaunchFlags(['node', 'cli', 'pretrain', '--nproc-per-node', '2', '--master-port=2950', '--out', 'x']);
    expect(argv).toEqual(['node', 'cli', 'pretrain', '--out', 'x']);
    expect(flags).toEqual({ nprocPerNode: 2, masterPort: 2950 });
    expect(() => extractLaunchFlags(['--nproc-per-node', '0'])).toThrow(/integer >= 1/);
    expect(positionForRank({ worldSize: 2, ranks: ['a', 'b'] }, 2, 1, 'ckpt')).toBe('b');
    expect(() => positionForRank({ pos: 1 }, 2, 0, 'ckpt')).toThrow(/saved by a run of 1 rank; resuming it with 2/);
  });
});
