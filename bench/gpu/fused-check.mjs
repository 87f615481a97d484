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
for (const kernel of ['residual_rms_norm', 'rotary', 'embedding_rms_norm']) {
  for (const dtype of ['float32', 'bfloat16', 'float16']) {
    const r = native.fusedKernelCheck(kernel, 'cuda', dtype, 0.1, 1234);
    results.push({ kernel, dtype, ...r });
    console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${kernel} ${dtype}: value error ${r.valueError.toExponential(2)}, gradient error ${r.gradientError.toExponential(2)} (limit ${r.limit.toExponential(1)}); fused ${r.fusedMs.toFixed(3)} ms, unfused ${r.unfusedMs.toFixed(3)} ms`);
  }
}
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ results }, null, 1) + '\n');
process.exit(results.every((r) => r.ok) ? 0 : 1);
