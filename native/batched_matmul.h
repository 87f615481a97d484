// Batched matrix products on the CPU, one whole product per thread, operands read in place.
//
// libtorch 1.13's CPU bmm runs a batch's products one after another, each split over the threads
// by OpenBLAS (small products split badly: attention's 512 × 64 · 64 × 512 ran at a third of the
// machine's matrix-product speed), and matmul first copies every operand whose batch dimensions
// do not merge into one — attention's q, k and v, (batch, heads, seq, head_dim) views of
// (batch, seq, heads, head_dim) tensors, all three, and its output on the way back. Here the
// batch's products are shared out among at::parallel_for's threads, each product on one thread
// (OpenBLAS is told so for the duration), every operand read through its strides.
#pragma once

#include <torch/torch.h>

namespace roformer::compute {

// Whether batched_matmul takes its own path for these operands: CPU, float or double, the same
// batch dimensions (at least one) on both, and OpenBLAS underneath (whose thread count can be set).
bool batched_matmul_applies(const torch::Tensor& a, const torch::Tensor& b);

// alpha · a (..., n, k) · b (..., k, m), differentiable; torch::matmul where the path above does not
// apply. alpha rides in the BLAS call itself (attention's 1/sqrt(head_dim): no pass over q or its
// gradient).
// heads_last_out: a 4-d result (B, H, n, m) stored as (B, n, H, m), so that
// result.transpose(1, 2).reshape({B, n, H·m}) is a view (attention's heads joined for the output
// projection) instead of a copy.
torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, bool heads_last_out = false,
                             double alpha = 1.0);

}  // namespace roformer::compute
