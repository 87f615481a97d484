#include "adamw_cpu.h"

#include <c10/util/BFloat16.h>  // libtorch's bf16 rounding (to nearest even), no more of torch

#include <cmath>
#include <cstring>

namespace roformer::kernels {

// Built for AVX-512, AVX2 and the baseline ISA, chosen when the addon loads: the loop is
// element-wise (sqrt and division included), so each vector width is a straight gain.
__attribute__((target_clones("avx512f", "avx2", "default"))) void adamw_cpu(float* __restrict p,
                                                                             const float* __restrict g,
                                                                             float* __restrict m, float* __restrict v,
                                                                             int64_t begin, int64_t end,
                                                                             const AdamWStep& step) {
  const AdamWStep s = step;  // by value: the loop must not reload it through a pointer that may alias
  const float one_minus_beta1 = 1.0f - s.beta1, one_minus_beta2 = 1.0f - s.beta2;
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i] * s.grad_multiplier;
    const float mi = s.beta1 * m[i] + one_minus_beta1 * gi;
    const float vi = s.beta2 * v[i] + one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * s.decay - s.step_size * (mi / (std::sqrt(vi) * s.inv_sqrt_bias2 + s.eps));
  }
}

// The update by adamw_cpu itself, a block at a time, then the block's rounding while it is in
// cache: one loop for the update, so that p is the same to the bit with or without the copy (two
// loops that each fuse the rounding in would be vectorised, and contracted into FMAs, apiece).
__attribute__((target_clones("avx512f", "avx2", "default"))) static void round_to_bf16(const float* __restrict p,
                                                                                       c10::BFloat16* __restrict out,
                                                                                       int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) out[i] = c10::BFloat16(p[i]);
}

void adamw_cpu_pass(float* p, float* g, float* m, float* v, c10::BFloat16* p_bf16, bool zero_g, int64_t begin,
                    int64_t end, const AdamWStep& step) {
  if (p_bf16 == nullptr && !zero_g) return adamw_cpu(p, g, m, v, begin, end, step);
  constexpr int64_t kBlock = 4096;  // 16 KB of p (and of g): still in L1/L2 when rounded or zeroed
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t stop = start + kBlock < end ? start + kBlock : end;
    adamw_cpu(p, g, m, v, start, stop, step);
    if (p_bf16 != nullptr) round_to_bf16(p, p_bf16, start, stop);
    if (zero_g) std::memset(g + start, 0, static_cast<size_t>(stop - start) * sizeof(float));
  }
}

}  // namespace roformer::kernels
