#include "grad_accumulate_cpu.h"

namespace roformer::kernels {

// Built for AVX-512, AVX2 and the baseline ISA, chosen when the addon loads: a shift and an add
// per element, which the compiler vectorises at each width.
__attribute__((target_clones("avx512f", "avx2", "default"))) void add_bf16_into_float(float* __restrict acc,
                                                                                       const c10::BFloat16* __restrict g,
                                                                                       int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) acc[i] += static_cast<float>(g[i]);
}

}  // namespace roformer::kernels
