// Each fused CUDA kernel (native/kernels/, issue 19 item 1) against the unfused libtorch
// expression on the GPU, values and gradients, in fp32, bf16 and fp16 (bench/gpu/check.sh phase
// kernels). The comparisons live in the addon (fusedKernelCheck, native/kernels/fused_check.cpp)
// so that the CPU instantiation and the CUDA kernels are checked by the same code; without CUDA
// kernels in this build the phase is skipped.
import { writeFileSync } from 'node:fs';

const { loadNative } = await import('../../dist/bindings/load.js');

const native = loadNative();
const jsonIndex = process.argv.indexOf('--json');
const jsonFile = jsonIndex > 0 ? process.argv[jsonIndex + 1] : undefined;
if (typeof native.fusedKernels !== 'function' || !native.fusedKernels().cuda) {
  console.log('skip: this build has no fused CUDA kernels (configure found no CUDA libtorch, or they are not in this version)');
  process.exit(3);
}
const results = [];
// The base model's shapes at 64 × 128. Under bf16 autocast the model keeps the residual stream in
// bf16 (the embedding norm writes it so, from fp32 tables); float32 streams are checked too.
const shape = { batch: 64, seq: 128, hidden: 768, heads: 12, iters: 20 };
const cases = [
  ...['float32', 'bfloat16', 'float16'].flatMap((dtype) => [
    { kernel: 'residual_rms_norm', dtype },
    { kernel: 'rotary', dtype },
  ]),
  { kernel: 'residual_rms_norm', dtype: 'bfloat16', xDtype: 'float32' },
  { kernel: 'residual_rms_norm', dtype: 'float16', xDtype: 'float32' },
  { kernel: 'embedding_rms_norm', dtype: 'float32' },
  { kernel: 'embedding_rms_norm', dtype: 'float32', xDtype: 'bfloat16' },
  { kernel: 'embedding_rms_norm', dtype: 'float32', xDtype: 'float16' },
  // The norms run a warp per row up to 2,048 wide, four rows a block: 21 rows leave the last
  // block three spare warps; 4,096-wide rows take the block-per-row kernels.
  { kernel: 'residual_rms_norm', dtype: 'bfloat16', batch: 3, seq: 7 },
  { kernel: 'embedding_rms_norm', dtype: 'float32', xDtype: 'bfloat16', batch: 3, seq: 7 },
  { kernel: 'residual_rms_norm', dtype: 'bfloat16', batch: 2, seq: 64, hidden: 4096, heads: 32 },
  { kernel: 'embedding_rms_norm', dtype: 'float32', xDtype: 'bfloat16', batch: 2, seq: 64, hidden: 4096, heads: 32 },
];
for (const c of cases) {
  const r = native.fusedKernelCheck({ device: 'cuda', p: c.kernel === 'rotary' ? 0 : 0.1, seed: 1234, ...shape, ...c });
  results.push({ ...c, ...r });
  const shaped = c.batch ? `, ${c.batch} × ${c.seq} × ${c.hidden ?? shape.hidden}` : '';
  const name = `${c.kernel} ${c.dtype}${c.xDtype ? ` (${c.kernel === 'embedding_rms_norm' ? 'out' : 'x'} ${c.xDtype})` : ''}${shaped}`;
  console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${name}: value error ${r.valueError.toExponential(2)}, gradient error ${r.gradientError.toExponential(2)} (limit ${r.limit.toExponential(1)}), kept ${r.keptFraction.toFixed(3)}; fused ${r.fusedMs.toFixed(3)} ms, unfused ${r.unfusedMs.toFixed(3)} ms (${(r.unfusedMs / r.fusedMs).toFixed(2)}×)`);
}
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ results }, null, 1) + '\n');
process.exit(results.every((r) => r.ok) ? 0 : 1);
