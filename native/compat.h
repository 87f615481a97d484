// Differences between libtorch versions, kept in one place.
//
// The addon builds against Debian's libtorch 1.13 (CPU) and against libtorch 2.x
// (CUDA, from `pip install torch`). Everything that differs between them lives
// here as a small helper, so the model code reads the same for both.
#pragma once

#include <ATen/autocast_mode.h>

#include <optional>
#include <torch/torch.h>
#include <torch/version.h>

#include "batched_matmul.h"
#include "kernels/fused_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "host_allocator.h"
#include "weight_copies.h"

// CUDA memory statistics come from the CUDA caching allocator, usable only when
// libtorch was built with CUDA (CMakeLists.txt defines ROFORMER_WITH_CUDA then).
#ifdef ROFORMER_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#define ROFORMER_HAS_CUDA_ALLOCATOR 1
#endif

// libtorch 2.4: the per-device autocast setters gave way to device-type arguments, and
// the fused AdamW kernel (CPU and CUDA) arrived with foreach ops taking a tensor scalar.
#define ROFORMER_LIBTORCH_2_4 (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

namespace roformer::compat {

// at::_fused_adamw_: AdamW over a list of parameters in one kernel, reading the learning
// rate, step count, gradient scale and found-inf flag from tensors (no host round trip).
constexpr bool kHasFusedAdamW = ROFORMER_LIBTORCH_2_4;

// tensors[i] *= factor for every tensor, `factor` a 0-dim tensor on their device.
inline void foreach_mul_(std::vector<torch::Tensor>& tensors, const torch::Tensor& factor) {
#if ROFORMER_LIBTORCH_2_4
  at::_foreach_mul_(tensors, factor);
#else
  for (auto& t : tensors) t.mul_(factor);
#endif
}

// dst[i] ← src[i] for every pair, converting the dtype (fp32 weights into their bf16 copies): on
// CUDA one multi-tensor kernel for the list (a few launches), where libtorch has it.
inline void foreach_copy_(std::vector<torch::Tensor>& dst, const std::vector<torch::Tensor>& src) {
#if ROFORMER_LIBTORCH_2_4
  at::_foreach_copy_(dst, src);
#else
  for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
#endif
}

// One fused AdamW update (PyTorch's _fused_adamw_): per parameter, g = grad / grad_scale,
// p ← p·(1 − lr·weight_decay), the Adam moments, p ← p − lr/(1−β1ᵗ)·m/(sqrt(v/(1−β2ᵗ)) + ε),
// t read from `steps` (the count including this update); nothing changes where found_inf
// is non-zero. lr, grad_scale and found_inf are 0-dim float tensors on the parameters'
// device. Only where kHasFusedAdamW (callers check it).
inline void fused_adamw_(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                         const std::vector<torch::Tensor>& exp_avgs, const std::vector<torch::Tensor>& exp_avg_sqs,
                         const std::vector<torch::Tensor>& steps, const torch::Tensor& lr, double beta1, double beta2,
                         double weight_decay, double eps, const torch::Tensor& grad_scale,
                         const torch::Tensor& found_inf) {
#if ROFORMER_LIBTORCH_2_4
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2, weight_decay,
                    eps, /*amsgrad=*/false, /*maximize=*/false, grad_scale, found_inf);
#else
  (void)params, (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)steps, (void)lr, (void)beta1, (void)beta2,
      (void)weight_decay, (void)eps, (void)grad_scale, (void)found_inf;
  throw std::logic_error("fused AdamW needs libtorch >= 2.4");
#endif
}

// libtorch 2.0 added at::scaled_dot_product_attention (fused flash / memory-efficient kernels).
constexpr bool kHasFusedAttention = TORCH_VERSION_MAJOR >= 2;

inline std::string libtorch_version() { return TORCH_VERSION; }

// softmax(q kᵀ / sqrt(head_dim) + mask) v, with dropout on the attention weights.
// q, k, v: (batch, heads, seq, head_dim). keep: bool, broadcastable to
// (batch, heads, seq, seq), true where a key may be attended; undefined = no mask.
inline torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                  const torch::Tensor& v, const torch::Tensor& keep,
                                                  double dropout_p) {
#if TORCH_VERSION_MAJOR >= 2
  c10::optional<torch::Tensor> mask;
  if (keep.defined()) mask = keep;
  return at::scaled_dot_product_attention(q, k, v, mask, dropout_p, /*is_causal=*/false);
#else
  // The products through compute::batched_matmul: on the CPU each on one thread, q, k and v read
  // in place, 1/sqrt(head_dim) applied by the product itself (BLAS's alpha; elsewhere q is scaled
  // first, as PyTorch's own math path does), the output in (batch, seq, heads, head_dim) memory,
  // ready for the output projection.
  auto scores = compute::batched_matmul(q, k.transpose(-2, -1), /*heads_last_out=*/false,
                                        1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  if (keep.defined()) {
    scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (dropout_p > 0 && fused::use_softmax_dropout(scores)) {
    return compute::batched_matmul(fused::softmax_dropout(scores, dropout_p), v, /*heads_last_out=*/true);
  }
  // Softmax in at least float32: fp16 scores overflow easily.
  auto probs = (q.scalar_type() == torch::kDouble ? scores.softmax(-1) : scores.softmax(-1, torch::kFloat))
                   .to(q.scalar_type());
  if (dropout_p > 0) probs = fused::dropout(probs, dropout_p);  // the CPU's vectorised kernel where it applies
  return compute::batched_matmul(probs, v, /*heads_last_out=*/true);
#endif
}

// Peak bytes allocated on a CUDA device since the last reset (0 without CUDA).
inline int64_t cuda_peak_allocated(int device) {
#ifdef ROFORMER_HAS_CUDA_ALLOCATOR
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  // Index 0 is StatType::AGGREGATE (the enum moved namespaces in libtorch 2.5; its order did not).
  return stats.allocated_bytes[0].peak;
#else
  return 0;
#endif
}

// Hands memory that was just freed back to the operating system: glibc keeps freed
// heap memory in its arenas, the host allocator (host_allocator.h) its cached large
// blocks, and the CUDA caching allocator its freed blocks reserved, so without this a
// disposed model still looks resident. The bf16 copies of freed weights go first.
inline void release_freed_memory() {
  weight_copies::drop_freed();
  release_host_cache();
#ifdef __GLIBC__
  malloc_trim(0);
#endif
#ifdef ROFORMER_HAS_CUDA_ALLOCATOR
  c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

// Large CPU tensors come from the host allocator's cache (host_allocator.cpp), so
// glibc keeps its own mmap threshold. ROFORMER_MMAP_THRESHOLD=<bytes> fixes it (with
// ROFORMER_HOST_CACHE=0, e.g. 4194304 gives big tensors mappings of their own: less
// memory, slower steps); a MALLOC_MMAP_THRESHOLD_ the user set wins.
inline void tune_malloc() {
#ifdef __GLIBC__
  if (std::getenv("MALLOC_MMAP_THRESHOLD_")) return;
  const char* env = std::getenv("ROFORMER_MMAP_THRESHOLD");
  const long bytes = env ? std::atol(env) : 0;
  if (bytes > 0) mallopt(M_MMAP_THRESHOLD, static_cast<int>(std::min<long>(bytes, 1L << 30)));
#endif
}

inline void cuda_reset_peak(int device) {
#ifdef ROFORMER_HAS_CUDA_ALLOCATOR
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
#endif
}

// Mixed precision for the forward pass: inside the guard, matrix products on
// `device` run in `dtype` (bf16 or fp16) while the weights stay fp32. Autocast
// state is thread-local, so the guard is made on the thread that runs the step.
// libtorch 2.4 replaced the per-device setters with device-type arguments.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, torch::ScalarType dtype) : device_type_(device.type()) {
#if ROFORMER_LIBTORCH_2_4
    previous_enabled_ = at::autocast::is_autocast_enabled(device_type_);
    previous_dtype_ = at::autocast::get_autocast_dtype(device_type_);
    at::autocast::set_autocast_dtype(device_type_, dtype);
    at::autocast::set_autocast_enabled(device_type_, true);
#else
    if (device_type_ == torch::kCUDA) {
      previous_enabled_ = at::autocast::is_enabled();
      previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_autocast_gpu_dtype(dtype);
      at::autocast::set_enabled(true);
    } else {
      previous_enabled_ = at::autocast::is_cpu_enabled();
      previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_autocast_cpu_dtype(dtype);
      at::autocast::set_cpu_enabled(true);
    }
#endif
    at::autocast::increment_nesting();
  }

  ~AutocastGuard() {
    // Casted weight copies are cached while autocast is on; drop them with the last guard
    // (or with the AutocastCacheScope around it, which keeps them for a whole step).
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if ROFORMER_LIBTORCH_2_4
    at::autocast::set_autocast_enabled(device_type_, previous_enabled_);
    at::autocast::set_autocast_dtype(device_type_, previous_dtype_);
#else
    if (device_type_ == torch::kCUDA) {
      at::autocast::set_enabled(previous_enabled_);
      at::autocast::set_autocast_gpu_dtype(previous_dtype_);
    } else {
      at::autocast::set_cpu_enabled(previous_enabled_);
      at::autocast::set_autocast_cpu_dtype(previous_dtype_);
    }
#endif
  }

  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType device_type_;
  bool previous_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat;
};

// The dtype autocast runs `device`'s matrix products in on this thread, or nothing where autocast
// is off there.
inline std::optional<torch::ScalarType> autocast_dtype(torch::Device device) {
#if ROFORMER_LIBTORCH_2_4
  if (!at::autocast::is_autocast_enabled(device.type())) return std::nullopt;
  return at::autocast::get_autocast_dtype(device.type());
#else
  if (device.is_cuda()) {
    if (!at::autocast::is_enabled()) return std::nullopt;
    return at::autocast::get_autocast_gpu_dtype();
  }
  if (device.is_cpu() && at::autocast::is_cpu_enabled()) return at::autocast::get_autocast_cpu_dtype();
  return std::nullopt;
#endif
}

// Keeps autocast's cache of cast weights alive for as long as it lives: inside it each
// fp32 weight is cast to bf16/fp16 once, at its first use, however many forwards (the
// micro-batches of a step) run under AutocastGuards. Autocast itself stays switched on
// only by those guards, around the forwards, so backward runs without it. The cache is
// dropped when the scope ends, which must come before the optimiser changes the weights
// (the cached copies would be stale). Nesting counter and cache are thread-local, as the
// guards are; the API is the same in libtorch 1.13 and 2.x.
class AutocastCacheScope {
 public:
  AutocastCacheScope() { at::autocast::increment_nesting(); }
  ~AutocastCacheScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  }
  AutocastCacheScope(const AutocastCacheScope&) = delete;
  AutocastCacheScope& operator=(const AutocastCacheScope&) = delete;
};

}  // namespace roformer::compat
