#include "adamw_cpu.h"

#include <cmath>

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

}  // namespace roformer::kernels
