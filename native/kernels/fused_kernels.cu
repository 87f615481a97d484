// The fused CUDA kernels: one warp per row for the RMS-norm kernels (the whole block per row
// where rows are long), the row's values in shared memory between the two passes; one thread
// per pair for RoPE. The arithmetic is fused_rows.h's, shared with the CPU instantiation
// (fused_cpu.cpp).
#include "fused_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

namespace roformer::kernels {
namespace {

constexpr int kRowThreads = 128;  // threads per block; each thread handles groups of 4 elements
constexpr int kRowsPerBlock = kRowThreads / 32;
// Rows up to this long get one warp each (kRowsPerBlock rows a block): a row's sums are then warp
// shuffles with no barrier, and every lane has work (a 768-wide row is 192 groups of 4: six per
// lane of a warp, where 128 threads would leave half of them one group and the rest two). The
// forward's scratch, d floats a row, stays within 32 KB of shared memory a block.
constexpr int64_t kWarpRowMax = 2048;

// The block's threads as the lanes of one row: sum() reduces over the block (warp shuffles, then
// one value per warp through shared memory) and returns the total to every thread.
struct BlockLanes {
  int lane, count;
  float* partial;  // kRowThreads / 32 floats of shared memory
  __device__ float sum(float value) const {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
    const int warp = lane / 32, warps = count / 32;
    __syncthreads();  // an earlier sum's readers are done with `partial`
    if (lane % 32 == 0) partial[warp] = value;
    __syncthreads();
    float total = 0;
    for (int w = 0; w < warps; ++w) total += partial[w];
    return total;
  }
};

__device__ BlockLanes block_lanes() {
  __shared__ float partial[kRowThreads / 32];
  return BlockLanes{static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), partial};
}

// One warp's 32 threads as the lanes of one row: sum() is five shuffles, no barrier.
struct WarpLanes {
  int lane;
  static constexpr int count = 32;
  __device__ float sum(float value) const {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
  }
};

// Which row this thread works on, its lanes, and its slice of the block's scratch: a warp per row
// (kWarpRows) or the block per row.
template <bool kWarpRows>
struct RowOf;
template <>
struct RowOf<true> {
  __device__ static int64_t row() { return static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; }
  __device__ static WarpLanes lanes() { return WarpLanes{static_cast<int>(threadIdx.x % 32)}; }
  __device__ static int64_t slot() { return threadIdx.x / 32; }
};
template <>
struct RowOf<false> {
  __device__ static int64_t row() { return blockIdx.x; }
  __device__ static BlockLanes lanes() { return block_lanes(); }
  __device__ static int64_t slot() { return 0; }
};

// The launch of a row kernel over `rows` rows of d: blocks, and scratch bytes a block (d floats a row).
struct RowLaunch {
  bool warp_rows;
  unsigned blocks;
  size_t scratch;
};
RowLaunch row_launch(int64_t rows, int64_t d, bool needs_scratch) {
  const bool warp_rows = d <= kWarpRowMax;
  const int64_t blocks = warp_rows ? (rows + kRowsPerBlock - 1) / kRowsPerBlock : rows;
  const size_t per_row = needs_scratch ? static_cast<size_t>(d) * sizeof(float) : 0;
  return RowLaunch{warp_rows, static_cast<unsigned>(blocks), warp_rows ? kRowsPerBlock * per_row : per_row};
}

// Each row kernel first returns from the warps past the last row (warp rows only: the last
// block's spare warps; a warp's row has no barrier, so the others go on without them).
template <class T, class F, bool kWarpRows>
__global__ void __launch_bounds__(kRowThreads) residual_rms_norm_forward_kernel(const T* x, const F* f, T* y, float* inv_rms, int64_t rows,
                                                                                int64_t d, float alpha, float eps, Dropout dropout) {
  using R = RowOf<kWarpRows>;
  const int64_t row = R::row();
  if (row >= rows) return;
  extern __shared__ float scratch[];
  residual_rms_norm_forward_row<float, T, F>(x, f, y, inv_rms, scratch + R::slot() * d, row, d, alpha, eps,
                                             dropout.resolved(), R::lanes());
}

template <class T, class F, bool kWarpRows>
__global__ void __launch_bounds__(kRowThreads) residual_rms_norm_backward_kernel(const T* dy, const T* y, const float* inv_rms, T* dx,
                                                                                 F* df, int64_t rows, int64_t d, float alpha, Dropout dropout) {
  using R = RowOf<kWarpRows>;
  const int64_t row = R::row();
  if (row >= rows) return;
  residual_rms_norm_backward_row<float, T, F>(dy, y, inv_rms, dx, df, row, d, alpha, dropout.resolved(), R::lanes());
}

// Index: uint32_t when every offset of the launch fits in 32 bits (rotary_qk_cuda), else int64_t.
template <class T, class Index>
__global__ void rotary_qk_kernel(const T* q, const T* k, T* q_out, T* k_out, const float* cos, const float* sin,
                                 Index pairs, Index table_rows, Index seq, Index heads, Index head_dim,
                                 RotaryInput<Index> q_stride, RotaryInput<Index> k_stride, float sign) {
  // Pairs of q first, then of k: one launch for both.
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < 2 * pairs;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    const bool is_q = i < pairs;
    rotary_pair_at<float, T, float, Index>(is_q ? q : k, is_q ? q_out : k_out, cos, sin, is_q ? i : i - pairs, table_rows,
                                           seq, heads, head_dim, is_q ? q_stride : k_stride, sign);
  }
}

template <class T, bool kWarpRows>
__global__ void __launch_bounds__(kRowThreads) embedding_rms_norm_forward_kernel(const int64_t* ids, const int64_t* type_ids, const float* tok,
                                                                                 const float* seg, T* y, float* inv_rms, int64_t rows,
                                                                                 int64_t d, float eps, Dropout dropout) {
  using R = RowOf<kWarpRows>;
  const int64_t row = R::row();
  if (row >= rows) return;
  extern __shared__ float scratch[];
  embedding_rms_norm_forward_row<float, float, T>(ids, type_ids, tok, seg, y, inv_rms, scratch + R::slot() * d, row, d,
                                                  eps, dropout.resolved(), R::lanes());
}

template <class T, bool kWarpRows>
__global__ void __launch_bounds__(kRowThreads) embedding_rms_norm_backward_kernel(const int64_t* ids, const int64_t* type_ids, const T* dy,
                                                                                  const T* y, const float* inv_rms, float* tok_grad,
                                                                                  float* seg_grad, int64_t rows, int64_t d, Dropout dropout) {
  using R = RowOf<kWarpRows>;
  const int64_t row = R::row();
  if (row >= rows) return;
  float* tok_row = tok_grad + ids[row] * d;
  float* seg_row = seg_grad + type_ids[row] * d;
  embedding_rms_norm_backward_row<float, T>(dy, y, inv_rms, row, d, dropout.resolved(), R::lanes(), [=] __device__(int64_t j, float g) {
    atomicAdd(tok_row + j, g);
    atomicAdd(seg_row + j, g);
  });
}

// Calls fn with a null pointer of the storage type (for template argument deduction).
template <class Fn>
void dispatch(Storage t, Fn fn) {
  switch (t) {
    case Storage::f32: fn(static_cast<float*>(nullptr)); break;
    case Storage::f16: fn(static_cast<__half*>(nullptr)); break;
    case Storage::bf16: fn(static_cast<__nv_bfloat16*>(nullptr)); break;
  }
}

// Launches through fn for one storage type, or two (the residual stream's and the branch's),
// and returns the launch's error (cudaGetLastError, read once: it clears the error).
template <class Fn>
cudaError_t with_storage(Storage t, Fn fn) {
  dispatch(t, fn);
  return cudaGetLastError();
}
template <class Fn>
cudaError_t with_storages(Storage t, Storage ft, Fn fn) {
  dispatch(t, [&](auto* type) { dispatch(ft, [&](auto* f_type) { fn(type, f_type); }); });
  return cudaGetLastError();
}

// Calls fn with std::true_type for a warp per row, std::false_type for a block per row.
template <class Fn>
void with_row_geometry(const RowLaunch& launch, Fn fn) {
  if (launch.warp_rows) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

}  // namespace

cudaError_t residual_rms_norm_forward_cuda(Storage t, Storage ft, const void* x, const void* f, void* y, float* inv_rms,
                                           int64_t rows, int64_t d, float alpha, float eps, Dropout dropout,
                                           cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const RowLaunch launch = row_launch(rows, d, /*needs_scratch=*/true);
  return with_storages(t, ft, [&](auto* type, auto* f_type) {
    using T = std::remove_pointer_t<decltype(type)>;
    using F = std::remove_pointer_t<decltype(f_type)>;
    with_row_geometry(launch, [&](auto warp_rows) {
      residual_rms_norm_forward_kernel<T, F, decltype(warp_rows)::value><<<launch.blocks, kRowThreads, launch.scratch, stream>>>(
          static_cast<const T*>(x), static_cast<const F*>(f), static_cast<T*>(y), inv_rms, rows, d, alpha, eps, dropout);
    });
  });
}

cudaError_t residual_rms_norm_backward_cuda(Storage t, Storage ft, const void* dy, const void* y, const float* inv_rms,
                                            void* dx, void* df, int64_t rows, int64_t d, float alpha, Dropout dropout,
                                            cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const RowLaunch launch = row_launch(rows, d, /*needs_scratch=*/false);
  return with_storages(t, ft, [&](auto* type, auto* f_type) {
    using T = std::remove_pointer_t<decltype(type)>;
    using F = std::remove_pointer_t<decltype(f_type)>;
    with_row_geometry(launch, [&](auto warp_rows) {
      residual_rms_norm_backward_kernel<T, F, decltype(warp_rows)::value><<<launch.blocks, kRowThreads, 0, stream>>>(
          static_cast<const T*>(dy), static_cast<const T*>(y), inv_rms, static_cast<T*>(dx), static_cast<F*>(df), rows,
          d, alpha, dropout);
    });
  });
}

cudaError_t rotary_qk_cuda(Storage t, const void* q, const void* k, void* q_out, void* k_out, const float* cos,
                           const float* sin, int64_t batch, int64_t seq, int64_t table_rows, int64_t heads,
                           int64_t head_dim, RotaryInput<int64_t> q_stride, RotaryInput<int64_t> k_stride, float sign,
                           cudaStream_t stream) {
  const int64_t tokens = batch * seq, pairs = tokens * heads * head_dim / 2;
  if (pairs == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = (2 * pairs + threads - 1) / threads;
  const unsigned grid = static_cast<unsigned>(blocks < 65535 * 16 ? blocks : 65535 * 16);
  // 32-bit index arithmetic when every index of the launch fits; the loop counter runs over the
  // pairs of q and k together, plus one grid stride past the end.
  const int64_t in_extent = std::max(rotary_input_extent(batch, seq, heads, head_dim, q_stride),
                                     rotary_input_extent(batch, seq, heads, head_dim, k_stride));
  const bool narrow = rotary_fits_32_bits(tokens, heads, head_dim, in_extent, table_rows,
                                          2 * pairs + static_cast<int64_t>(grid) * threads);
  return with_storage(t, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    if (narrow) {
      using I = uint32_t;
      auto to_narrow = [](RotaryInput<int64_t> s) {
        return RotaryInput<I>{static_cast<I>(s.batch), static_cast<I>(s.seq), static_cast<I>(s.head),
                              static_cast<I>(s.dim)};
      };
      rotary_qk_kernel<T, I><<<grid, threads, 0, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<T*>(q_out), static_cast<T*>(k_out), cos, sin,
          static_cast<I>(pairs), static_cast<I>(table_rows), static_cast<I>(seq), static_cast<I>(heads),
          static_cast<I>(head_dim), to_narrow(q_stride), to_narrow(k_stride), sign);
    } else {
      rotary_qk_kernel<T, int64_t><<<grid, threads, 0, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<T*>(q_out), static_cast<T*>(k_out), cos, sin,
          pairs, table_rows, seq, heads, head_dim, q_stride, k_stride, sign);
    }
  });
}

cudaError_t embedding_rms_norm_forward_cuda(Storage t, const int64_t* ids, const int64_t* type_ids, const float* tok,
                                            const float* seg, void* y, float* inv_rms, int64_t rows, int64_t d,
                                            float eps, Dropout dropout, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const RowLaunch launch = row_launch(rows, d, /*needs_scratch=*/true);
  return with_storage(t, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    with_row_geometry(launch, [&](auto warp_rows) {
      embedding_rms_norm_forward_kernel<T, decltype(warp_rows)::value><<<launch.blocks, kRowThreads, launch.scratch, stream>>>(
          ids, type_ids, tok, seg, static_cast<T*>(y), inv_rms, rows, d, eps, dropout);
    });
  });
}

cudaError_t embedding_rms_norm_backward_cuda(Storage t, const int64_t* ids, const int64_t* type_ids, const void* dy,
                                             const void* y, const float* inv_rms, float* tok_grad, float* seg_grad,
                                             int64_t rows, int64_t d, Dropout dropout, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const RowLaunch launch = row_launch(rows, d, /*needs_scratch=*/false);
  return with_storage(t, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    with_row_geometry(launch, [&](auto warp_rows) {
      embedding_rms_norm_backward_kernel<T, decltype(warp_rows)::value><<<launch.blocks, kRowThreads, 0, stream>>>(
          ids, type_ids, static_cast<const T*>(dy), static_cast<const T*>(y), inv_rms, tok_grad, seg_grad, rows, d,
          dropout);
    });
  });
}

}  // namespace roformer::kernels
