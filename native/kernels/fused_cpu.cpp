// The CPU instantiation of fused_rows.h: the same per-row code as the CUDA kernels, one lane per
// row, with a row's scratch on the stack of the loop (std::vector reused across the rows).
#include "fused_cpu.h"

#include <algorithm>
#include <vector>

namespace roformer::kernels {

template <class T>
void residual_rms_norm_forward_cpu(const T* x, const T* f, T* y, T* inv_rms, int64_t begin, int64_t end, int64_t d,
                                   T alpha, T eps, Dropout dropout) {
  std::vector<T> scratch(d);
  for (int64_t row = begin; row < end; ++row)
    residual_rms_norm_forward_row<T, T, T>(x, f, y, inv_rms, scratch.data(), row, d, alpha, eps, dropout, SingleLane{});
}

template <class T>
void residual_rms_norm_backward_cpu(const T* dy, const T* y, const T* inv_rms, T* dx, T* df, int64_t begin,
                                    int64_t end, int64_t d, T alpha, Dropout dropout) {
  for (int64_t row = begin; row < end; ++row)
    residual_rms_norm_backward_row<T, T, T>(dy, y, inv_rms, dx, df, row, d, alpha, dropout, SingleLane{});
}

template <class T>
void rotary_cpu(const T* in, T* out, const T* cos, const T* sin, int64_t begin, int64_t end, int64_t table_rows,
                int64_t heads, int64_t head_dim, int64_t in_token_stride, T sign) {
  // The GPU's choice of index type (rotary_fits_32_bits), so that the float64 tests check the
  // 32-bit arithmetic the GPU runs on every ordinary shape, and the 64-bit one on the rest.
  const int64_t tokens = end / std::max<int64_t>(1, heads * head_dim / 2) + 1;  // those pairs [0, end) reach
  if (rotary_fits_32_bits(tokens, heads, head_dim, in_token_stride, table_rows, end)) {
    using I = uint32_t;
    for (int64_t pair = begin; pair < end; ++pair)
      rotary_pair_at<T, T, T, I>(in, out, cos, sin, static_cast<I>(pair), static_cast<I>(table_rows), static_cast<I>(heads),
                                 static_cast<I>(head_dim), static_cast<I>(in_token_stride), sign);
  } else {
    for (int64_t pair = begin; pair < end; ++pair)
      rotary_pair_at<T, T, T>(in, out, cos, sin, pair, table_rows, heads, head_dim, in_token_stride, sign);
  }
}

template <class T>
void embedding_rms_norm_forward_cpu(const int64_t* ids, const int64_t* type_ids, const T* tok, const T* seg, T* y,
                                    T* inv_rms, int64_t begin, int64_t end, int64_t d, T eps, Dropout dropout) {
  std::vector<T> scratch(d);
  for (int64_t row = begin; row < end; ++row)
    embedding_rms_norm_forward_row<T, T, T>(ids, type_ids, tok, seg, y, inv_rms, scratch.data(), row, d, eps, dropout,
                                            SingleLane{});
}

template <class T>
void embedding_rms_norm_backward_cpu(const T* dy, const T* y, const T* inv_rms, T* grad, int64_t begin, int64_t end,
                                     int64_t d, Dropout dropout) {
  for (int64_t row = begin; row < end; ++row) {
    T* out = grad + row * d;
    for (int64_t j = 0; j < d; ++j) out[j] = T(0);  // dropped elements get no gradient
    embedding_rms_norm_backward_row<T, T>(dy, y, inv_rms, row, d, dropout, SingleLane{},
                                          [out](int64_t j, T g) { out[j] = g; });
  }
}

void dropout_keep_mask(uint8_t* keep, int64_t rows, int64_t d, Dropout dropout) {
  for (int64_t g = 0; g < rows * d / 4; ++g) {
    const unsigned bits = dropout.keep4(g);
    for (int k = 0; k < 4; ++k) keep[4 * g + k] = (bits >> k) & 1u;
  }
}

#define ROFORMER_FUSED_CPU(T)                                                                                         \
  template void residual_rms_norm_forward_cpu<T>(const T*, const T*, T*, T*, int64_t, int64_t, int64_t, T, T,        \
                                                 Dropout);                                                            \
  template void residual_rms_norm_backward_cpu<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, int64_t, T, \
                                                  Dropout);                                                           \
  template void rotary_cpu<T>(const T*, T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                              T);                                                                                     \
  template void embedding_rms_norm_forward_cpu<T>(const int64_t*, const int64_t*, const T*, const T*, T*, T*,        \
                                                  int64_t, int64_t, int64_t, T, Dropout);                             \
  template void embedding_rms_norm_backward_cpu<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t, Dropout);
ROFORMER_FUSED_CPU(float)
ROFORMER_FUSED_CPU(double)

}  // namespace roformer::kernels
