// AdamW's update on the CPU in one pass over each parameter (no torch header; c10's bf16 type): what the
// multi-tensor chain of AdamW::step (optimizers.cpp) does in ten passes — clipping's multiplier,
// decay, the two moments, sqrt, the bias correction, eps, the step — reading p, g, m, v once and
// writing p, m, v once. libtorch ≥ 2.4 has its own fused AdamW (compat::fused_adamw_); this is for the CPU of
// the libtorch versions before it.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace roformer::kernels {

// The step's constants, the same for every element of a parameter.
struct AdamWStep {
  float grad_multiplier = 1;  // g ← g·grad_multiplier as it is read (gradient clipping)
  float decay;           // p ← p·decay first: 1 − lr·λ (1 where the parameter is not decayed)
  float beta1, beta2;    // m ← β1·m + (1−β1)·g ; v ← β2·v + (1−β2)·g²
  float inv_sqrt_bias2;  // 1/sqrt(1 − β2ᵗ)
  float eps;
  float step_size;       // p ← p − step_size · m/(sqrt(v)/sqrt(1 − β2ᵗ) + eps), step_size = lr/(1 − β1ᵗ)
};

// Elements [begin, end) of one parameter, in place; the caller splits a parameter among threads.
void adamw_cpu(float* p, const float* g, float* m, float* v, int64_t begin, int64_t end, const AdamWStep& step);

// The same a block at a time, and after each block's update, while it is in cache: the updated p
// rounded to bf16 (as libtorch's cast rounds) into `p_bf16` unless it is null (its autocast copy,
// weight_copies.h), and g zeroed when `zero_g` (the gradient consumed: the trainer's next step
// need not zero it in a pass of its own). p, m and v come out bit for bit as adamw_cpu's.
void adamw_cpu_pass(float* p, float* g, float* m, float* v, c10::BFloat16* p_bf16, bool zero_g, int64_t begin,
                    int64_t end, const AdamWStep& step);

}  // namespace roformer::kernels
