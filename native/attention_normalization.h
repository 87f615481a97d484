// How attention weights are normalised, one choice shared by both architectures:
//
//   softmax        A = softmax(a)                               the usual; RoFormerV2's default
//   softmax_plus   A = softmax(a · log n / log 512)             GAU-α's default: the entropy of a row
//                                                                stays level as n, the number of real
//                                                                keys of the row, grows past the
//                                                                trained length
//   squared_relu   A = relu(a)² / n                             "Transformer Quality in Linear Time"
//
// a = q kᵀ / √d (or q kᵀ without GAU-α's attention_scale); padded keys get no weight.
#pragma once

#include <torch/torch.h>

#include <string>

namespace roformer {

enum class AttentionNormalization { softmax, softmax_plus, squared_relu };

// "softmax", "softmax_plus" or "squared_relu" (config.json's `normalization`); anything
// else is an std::invalid_argument naming the choices.
AttentionNormalization parse_attention_normalization(const std::string& name);
std::string attention_normalization_name(AttentionNormalization normalization);

// Attention weights applied to v. q, k (batch, heads, seq, d); v (batch, heads, seq, dv);
// keep bool broadcastable to (batch, 1, seq, seq), true where a key may be attended, or
// undefined (every key). `scaled`: a = q kᵀ / √d, otherwise a = q kᵀ. Dropout on A.
torch::Tensor normalized_attention(torch::Tensor q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& keep, AttentionNormalization normalization,
                                   double dropout_p, bool scaled = true);

}  // namespace roformer
