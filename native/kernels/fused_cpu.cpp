// The CPU instantiation of fused_rows.h: the same per-row code as the CUDA kernels, one lane per
// row, with a row's scratch on the stack of the loop (std::vector reused across the rows).
#include "fused_cpu.h"

#include <c10/util/BFloat16.h>  // libtorch's bf16 storage type (round to nearest even), no more of torch

#include <algorithm>
#include <vector>

namespace roformer::kernels {

template <class T, class Acc>
void residual_rms_norm_forward_cpu(const T* x, const T* f, T* y, Acc* inv_rms, int64_t begin, int64_t end, int64_t d,
                                   Acc alpha, Acc eps, Dropout dropout) {
  std::vector<Acc> scratch(d);
  for (int64_t row = begin; row < end; ++row)
    residual_rms_norm_forward_row<Acc, T, T>(x, f, y, inv_rms, scratch.data(), row, d, alpha, eps, dropout, SingleLane{});
}

template <class T, class Acc>
void residual_rms_norm_backward_cpu(const T* dy, const T* y, const Acc* inv_rms, T* dx, T* df, int64_t begin,
                                    int64_t end, int64_t d, Acc alpha, Dropout dropout) {
  for (int64_t row = begin; row < end; ++row)
    residual_rms_norm_backward_row<Acc, T, T>(dy, y, inv_rms, dx, df, row, d, alpha, dropout, SingleLane{});
}

template <class T, class Acc>
void rotary_cpu(const T* in, T* out, const Acc* cos, const Acc* sin, int64_t begin, int64_t end, int64_t table_rows,
                int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, RotaryInput<int64_t> stride, Acc sign) {
  // The GPU's choice of index type (rotary_fits_32_bits) for the launch's whole tensor, so that
  // the float64 tests check the 32-bit arithmetic the GPU runs on every ordinary shape.
  const int64_t tokens = batch * seq;
  if (rotary_fits_32_bits(tokens, heads, head_dim, rotary_input_extent(batch, seq, heads, head_dim, stride), table_rows,
                          tokens * heads * head_dim)) {
    using I = uint32_t;
    const RotaryInput<I> narrow{static_cast<I>(stride.batch), static_cast<I>(stride.seq), static_cast<I>(stride.head),
                                static_cast<I>(stride.dim)};
    for (int64_t pair = begin; pair < end; ++pair)
      rotary_pair_at<Acc, T, Acc, I>(in, out, cos, sin, static_cast<I>(pair), static_cast<I>(table_rows), static_cast<I>(seq),
                                     static_cast<I>(heads), static_cast<I>(head_dim), narrow, sign);
  } else {
    for (int64_t pair = begin; pair < end; ++pair)
      rotary_pair_at<Acc, T, Acc>(in, out, cos, sin, pair, table_rows, seq, heads, head_dim, stride, sign);
  }
}

template <class W, class T, class Acc>
void embedding_rms_norm_forward_cpu(const int64_t* ids, const int64_t* type_ids, const W* tok, const W* seg, T* y,
                                    Acc* inv_rms, int64_t begin, int64_t end, int64_t d, Acc eps, Dropout dropout) {
  std::vector<Acc> scratch(d);
  for (int64_t row = begin; row < end; ++row)
    embedding_rms_norm_forward_row<Acc, W, T>(ids, type_ids, tok, seg, y, inv_rms, scratch.data(), row, d, eps, dropout,
                                              SingleLane{});
}

template <class T, class Acc>
void embedding_rms_norm_backward_cpu(const T* dy, const T* y, const Acc* inv_rms, Acc* grad, int64_t begin, int64_t end,
                                     int64_t d, Dropout dropout) {
  for (int64_t row = begin; row < end; ++row) {
    Acc* out = grad + row * d;
    for (int64_t j = 0; j < d; ++j) out[j] = Acc(0);  // dropped elements get no gradient
    embedding_rms_norm_backward_row<Acc, T>(dy, y, inv_rms, row, d, dropout, SingleLane{},
                                            [out](int64_t j, Acc g) { out[j] = g; });
  }
}

void dropout_keep_mask(uint8_t* keep, int64_t rows, int64_t d, Dropout dropout) {
  for (int64_t g = 0; g < rows * d / 4; ++g) {
    const unsigned bits = dropout.keep4(g);
    for (int k = 0; k < 4; ++k) keep[4 * g + k] = (bits >> k) & 1u;
  }
}

// Storage T with math in Acc; W, the embedding tables: float or double (the master weights).
#define ROFORMER_FUSED_CPU_NORMS(T, Acc, W)                                                                             \
  template void residual_rms_norm_forward_cpu<T, Acc>(const T*, const T*, T*, Acc*, int64_t, int64_t, int64_t, Acc,   \
                                                      Acc, Dropout);                                                  \
  template void residual_rms_norm_backward_cpu<T, Acc>(const T*, const T*, const Acc*, T*, T*, int64_t, int64_t,      \
                                                       int64_t, Acc, Dropout);                                        \
  template void embedding_rms_norm_forward_cpu<W, T, Acc>(const int64_t*, const int64_t*, const W*, const W*, T*,     \
                                                          Acc*, int64_t, int64_t, int64_t, Acc, Dropout);             \
  template void embedding_rms_norm_backward_cpu<T, Acc>(const T*, const T*, const Acc*, Acc*, int64_t, int64_t,       \
                                                        int64_t, Dropout);
ROFORMER_FUSED_CPU_NORMS(float, float, float)
ROFORMER_FUSED_CPU_NORMS(double, double, double)
ROFORMER_FUSED_CPU_NORMS(c10::BFloat16, float, float)

#define ROFORMER_FUSED_CPU_ROTARY(T, Acc)                                                                           \
  template void rotary_cpu<T, Acc>(const T*, T*, const Acc*, const Acc*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                   int64_t, int64_t, RotaryInput<int64_t>, Acc);
ROFORMER_FUSED_CPU_ROTARY(float, float)
ROFORMER_FUSED_CPU_ROTARY(double, double)
ROFORMER_FUSED_CPU_ROTARY(c10::BFloat16, float)

}  // namespace roformer::kernels
