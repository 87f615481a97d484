// Launchers of the fused CUDA kernels (fused_kernels.cu): raw device pointers and a stream, no
// torch header, so nvcc compiles them anywhere. Each returns the launch's cudaError_t. The
// arithmetic is fused_rows.h's; fused_ops.cpp turns these into autograd functions.
//
// Storage: the element type of the activations (math is float). Embedding tables are float.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "fused_rows.h"

namespace roformer::kernels {

enum class Storage { f32, f16, bf16 };

// (rows, d) x (storage t) and f (storage ft) → y (t); inv_rms (rows) kept for the backward. d % 4 == 0.
cudaError_t residual_rms_norm_forward_cuda(Storage t, Storage ft, const void* x, const void* f, void* y, float* inv_rms,
                                           int64_t rows, int64_t d, float alpha, float eps, Dropout dropout,
                                           cudaStream_t stream);
cudaError_t residual_rms_norm_backward_cuda(Storage t, Storage ft, const void* dy, const void* y, const float* inv_rms,
                                            void* dx, void* df, int64_t rows, int64_t d, float alpha, Dropout dropout,
                                            cudaStream_t stream);

// q and k (batch, seq, heads, head_dim), each read through its strides (rows of head_dim
// contiguous) → contiguous outputs, in one launch; sign −1 applies the transpose (the backward).
// Tables: float (table_rows, head_dim), token t reading row t mod table_rows (fused_rows.h).
cudaError_t rotary_qk_cuda(Storage t, const void* q, const void* k, void* q_out, void* k_out, const float* cos,
                           const float* sin, int64_t batch, int64_t seq, int64_t table_rows, int64_t heads,
                           int64_t head_dim, RotaryInput<int64_t> q_stride, RotaryInput<int64_t> k_stride, float sign,
                           cudaStream_t stream);

// ids, type_ids (rows) → y (rows, d) in Storage t; the gradients add into the float tables' grads.
cudaError_t embedding_rms_norm_forward_cuda(Storage t, const int64_t* ids, const int64_t* type_ids, const float* tok,
                                            const float* seg, void* y, float* inv_rms, int64_t rows, int64_t d,
                                            float eps, Dropout dropout, cudaStream_t stream);
cudaError_t embedding_rms_norm_backward_cuda(Storage t, const int64_t* ids, const int64_t* type_ids, const void* dy,
                                             const void* y, const float* inv_rms, float* tok_grad, float* seg_grad,
                                             int64_t rows, int64_t d, Dropout dropout, cudaStream_t stream);

}  // namespace roformer::kernels
