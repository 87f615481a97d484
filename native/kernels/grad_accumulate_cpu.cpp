#include "grad_accumulate_cpu.h"

#include <cstring>

namespace roformer::kernels {

// Built for AVX-512, AVX2 and the baseline ISA, chosen when the addon loads: a shift and an add
// per element, which the compiler vectorises at each width.
__attribute__((target_clones("avx512f", "avx2", "default"))) void add_bf16_into_float(float* __restrict acc,
                                                                                       const uint16_t* __restrict bf16,
                                                                                       int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t bits = static_cast<uint32_t>(bf16[i]) << 16;  // bf16 is the float's top half
    float value;
    std::memcpy(&value, &bits, sizeof value);
    acc[i] += value;
  }
}

}  // namespace roformer::kernels
