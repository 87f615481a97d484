// The CPU instantiation of the fused kernels' arithmetic (fused_rows.h), for rows
// [begin, end) of a row-major (rows, d) tensor: the caller splits the rows among threads
// (fused_ops.cpp uses at::parallel_for). Storage T is float or double with math in T, or
// c10::BFloat16 with math in float (Acc) — the residual stream under bf16 autocast, as the
// CUDA kernels keep it; the embedding tables W are float or double. Templates only here:
// fused_cpu.cpp instantiates exactly those combinations.
#pragma once

#include <cstdint>

#include "fused_rows.h"

namespace roformer::kernels {

template <class T, class Acc>
void residual_rms_norm_forward_cpu(const T* x, const T* f, T* y, Acc* inv_rms, int64_t begin, int64_t end, int64_t d,
                                   Acc alpha, Acc eps, Dropout dropout);
template <class T, class Acc>
void residual_rms_norm_backward_cpu(const T* dy, const T* y, const Acc* inv_rms, T* dx, T* df, int64_t begin,
                                    int64_t end, int64_t d, Acc alpha, Dropout dropout);
// Pairs [begin, end) of one tensor (batch, seq, heads, head_dim), read through `stride`; sign −1:
// the backward. The cos/sin tables in Acc.
template <class T, class Acc>
void rotary_cpu(const T* in, T* out, const Acc* cos, const Acc* sin, int64_t begin, int64_t end, int64_t table_rows,
                int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, RotaryInput<int64_t> stride, Acc sign);
template <class W, class T, class Acc>
void embedding_rms_norm_forward_cpu(const int64_t* ids, const int64_t* type_ids, const W* tok, const W* seg, T* y,
                                    Acc* inv_rms, int64_t begin, int64_t end, int64_t d, Acc eps, Dropout dropout);
// Writes each row's gradient of the summed embedding (keep·dh/(1−p)) into `grad` (rows, d), in
// Acc; the caller index-adds it into both tables' gradients.
template <class T, class Acc>
void embedding_rms_norm_backward_cpu(const T* dy, const T* y, const Acc* inv_rms, Acc* grad, int64_t begin, int64_t end,
                                     int64_t d, Dropout dropout);

// y = keep·x/(1−p) over groups [begin, end) of 4 elements of a flat tensor (numel % 4 == 0): the
// dropout of fused_ops.h's dropout(), its backward the same with dy; the mask is the one
// dropout_keep_mask draws for any (rows, d) of that many elements.
template <class T, class Acc>
void dropout_cpu(const T* x, T* y, int64_t begin, int64_t end, Dropout dropout);

// Attention weights on the CPU: for rows [begin, end) of n scores each, probs = softmax(s) and
// dropped = keep·probs/(1−p) in one pass (the mask of dropout_cpu over the same flat tensor); the
// backward ds = dropped ⊙ dd − probs · Σ dropped·dd row by row (fused_cpu.cpp derives it).
template <class T, class Acc>
void softmax_dropout_forward_cpu(const T* s, T* probs, T* dropped, int64_t begin, int64_t end, int64_t n,
                                 Dropout dropout);
template <class T, class Acc>
void softmax_dropout_backward_cpu(const T* dd, const T* dropped, const T* probs, T* ds, int64_t begin, int64_t end,
                                  int64_t n);

// The feed-forward's ReLU over elements [begin, end) of a flat tensor: in place x ← max(x, 0),
// and its backward from the output, dx = dy where y > 0, else 0; NaN passes as libtorch's relu and
// threshold_backward pass it. T: float, double or c10::BFloat16 (compared as the float it is).
template <class T>
void relu_forward_cpu(T* x, int64_t begin, int64_t end);
template <class T>
void relu_backward_cpu(const T* dy, const T* y, T* dx, int64_t begin, int64_t end);

// The keep mask (1 kept, 0 dropped) of a (rows, d) tensor, as the kernels draw it.
void dropout_keep_mask(uint8_t* keep, int64_t rows, int64_t d, Dropout dropout);

}  // namespace roformer::kernels
