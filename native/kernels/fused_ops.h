// The fused kernels as autograd functions (native/kernels/: fused_rows.h holds the arithmetic,
// fused_kernels.cu the CUDA kernels, fused_cpu.cpp the CPU instantiation). Each *_applies()
// says whether the fused path takes these tensors (device, dtypes, shape); otherwise callers use
// libtorch's chain. Dropout masks are regenerated from a seed in the backward (fused_rows.h);
// the seed is drawn from libtorch's CPU generator (manualSeed makes it reproducible) unless given.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <utility>

namespace roformer::fused {

// Whether this build has the CUDA kernels (CMake found a CUDA libtorch and nvcc).
bool cuda_kernels_built();

// y = RMSNorm(x + α·dropout_p(f)) over the last dimension; x (the residual stream) and f (the
// branch) of one shape, y of x's dtype (on the CPU: x and f float, double or both bf16). p = 0:
// no dropout (eval).
bool residual_rms_norm_applies(const torch::Tensor& x, const torch::Tensor& f);
torch::Tensor residual_rms_norm(const torch::Tensor& x, const torch::Tensor& f, double alpha, double p, double eps,
                                std::optional<uint64_t> seed = std::nullopt);

// RoPE on q and k (batch, seq, heads, head_dim) in one launch, with the (seq, head_dim) cos and
// sin tables of RotaryEmbedding (or (batch, seq, head_dim): a row per token); returns contiguous
// rotated copies.
bool rotary_qk_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& cos);
std::pair<torch::Tensor, torch::Tensor> rotary_qk(const torch::Tensor& q, const torch::Tensor& k,
                                                  const torch::Tensor& cos, const torch::Tensor& sin);

// y = RMSNorm(dropout_p(tok[ids] + seg[type_ids])), shape ids.shape + (d), of dtype `out` (the
// residual stream's: bf16/fp16 under autocast, where the tables stay fp32; on the CPU bf16 only)
// or, without one, of the tables' dtype.
bool embedding_rms_norm_applies(const torch::Tensor& tok, const torch::Tensor& seg,
                                std::optional<torch::ScalarType> out = std::nullopt);
torch::Tensor embedding_rms_norm(const torch::Tensor& ids, const torch::Tensor& type_ids, const torch::Tensor& tok,
                                 const torch::Tensor& seg, double p, double eps,
                                 std::optional<uint64_t> seed = std::nullopt,
                                 std::optional<torch::ScalarType> out = std::nullopt);

// keep·x/(1−p), the mask drawn from a seed and regenerated in the backward (no mask stored): a
// CPU kernel (float, double, bf16; numel % 4 == 0) whose Philox runs in vector lanes, where
// libtorch 1.13's dropout draws every element from its CPU generator one at a time.
bool dropout_applies(const torch::Tensor& x);
// Dropout as the models call it (p = 0: x itself): this kernel where use_dropout() says so,
// else libtorch's torch::dropout.
torch::Tensor dropout(const torch::Tensor& x, double p, std::optional<uint64_t> seed = std::nullopt);

// dropout_p(softmax(scores)) over the last dimension on the CPU (float, double, bf16; numel % 4 ==
// 0), one pass each way: attention's weights where libtorch has no fused attention (< 2.0). The
// mask is dropout()'s for the same tensor and seed. p = 0 is allowed (plain softmax, one pass more).
bool softmax_dropout_applies(const torch::Tensor& scores);
torch::Tensor softmax_dropout(const torch::Tensor& scores, double p, std::optional<uint64_t> seed = std::nullopt);

// relu in place, as x.relu_(): on the CPU (float, double, bf16; contiguous) a kernel each way
// where ROFORMER_FUSED allows, its backward from the output; elsewhere libtorch's relu_.
bool relu_applies(const torch::Tensor& x);
torch::Tensor relu_(torch::Tensor x);

// Where the model takes the fused path (modules.cpp): on CUDA wherever a kernel applies; on the
// CPU only where a benchmark measured it faster than libtorch's chain (fused_ops.cpp says which).
// ROFORMER_FUSED=0 turns the fused path off everywhere (for comparisons), =1 on wherever it applies.
struct CpuChoice {
  bool residual_rms_norm, rotary, embedding_rms_norm, dropout, softmax_dropout, relu;
};
extern const CpuChoice used_on_cpu;
bool use_residual_rms_norm(const torch::Tensor& x, const torch::Tensor& f);
bool use_rotary_qk(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& cos);
bool use_embedding_rms_norm(const torch::Tensor& tok, const torch::Tensor& seg,
                            std::optional<torch::ScalarType> out = std::nullopt);
bool use_dropout(const torch::Tensor& x);
bool use_softmax_dropout(const torch::Tensor& scores);

// The keep mask (1 kept, 0 dropped; uint8, on the CPU) a kernel draws for a (rows, d) tensor.
torch::Tensor dropout_keep_mask(int64_t rows, int64_t d, double p, uint64_t seed);

}  // namespace roformer::fused
