#include "adamw_cpu.h"

#include <cmath>
#include <cstring>

namespace roformer::kernels {

namespace {

// One element's update; returns the new p.
inline __attribute__((always_inline)) float update(float* __restrict p, const float* __restrict g, float* __restrict m,
                                                   float* __restrict v, int64_t i, const AdamWStep& s) {
  const float gi = g[i] * s.grad_multiplier;
  const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * gi;
  const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float pi = p[i] * s.decay - s.step_size * (mi / (std::sqrt(vi) * s.inv_sqrt_bias2 + s.eps));
  p[i] = pi;
  return pi;
}

// x rounded to bf16 as c10::BFloat16 rounds: to nearest, ties to even; a NaN becomes the quiet NaN.
inline __attribute__((always_inline)) uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return x != x ? uint16_t{0x7FC0} : static_cast<uint16_t>(rounded);
}

}  // namespace

// Built for AVX-512, AVX2 and the baseline ISA, chosen when the addon loads: the loop is
// element-wise (sqrt and division included), so each vector width is a straight gain.
__attribute__((target_clones("avx512f", "avx2", "default"))) void adamw_cpu(float* __restrict p,
                                                                             const float* __restrict g,
                                                                             float* __restrict m, float* __restrict v,
                                                                             int64_t begin, int64_t end,
                                                                             const AdamWStep& step) {
  const AdamWStep s = step;  // by value: the loop must not reload it through a pointer that may alias
  for (int64_t i = begin; i < end; ++i) update(p, g, m, v, i, s);
}

// The update by adamw_cpu itself, a block at a time, then the block's rounding while it is in
// cache: one loop for the update, so that p is the same to the bit with or without the copy (two
// loops that each fuse the rounding in would be vectorised, and contracted into FMAs, apiece).
__attribute__((target_clones("avx512f", "avx2", "default"))) static void round_to_bf16(const float* __restrict p,
                                                                                       uint16_t* __restrict out,
                                                                                       int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) out[i] = to_bf16(p[i]);
}

void adamw_cpu_with_bf16_copy(float* p, const float* g, float* m, float* v, uint16_t* p_bf16, int64_t begin,
                              int64_t end, const AdamWStep& step) {
  constexpr int64_t kBlock = 4096;  // 16 KB of p: still in L1/L2 when it is rounded
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t stop = start + kBlock < end ? start + kBlock : end;
    adamw_cpu(p, g, m, v, start, stop, step);
    round_to_bf16(p, p_bf16, start, stop);
  }
}

}  // namespace roformer::kernels
