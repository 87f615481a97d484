#include "attention_normalization.h"

#include "batched_matmul.h"
#include "compat.h"
#include "kernels/fused_ops.h"

#include <cmath>
#include <stdexcept>

namespace roformer {

AttentionNormalization parse_attention_normalization(const std::string& name) {
  if (name == "softmax") return AttentionNormalization::softmax;
  if (name == "softmax_plus") return AttentionNormalization::softmax_plus;
  if (name == "squared_relu") return AttentionNormalization::squared_relu;
  throw std::invalid_argument("config: normalization must be 'softmax', 'softmax_plus' or 'squared_relu', got '" +
                              name + "'");
}

std::string attention_normalization_name(AttentionNormalization normalization) {
  switch (normalization) {
    case AttentionNormalization::softmax: return "softmax";
    case AttentionNormalization::softmax_plus: return "softmax_plus";
    case AttentionNormalization::squared_relu: return "squared_relu";
  }
  return "softmax";
}

namespace {

// n, the number of keys each query row may attend, shaped to broadcast over
// (batch, heads, seq, ·): (batch, 1, 1 or seq, 1), or a plain number without a mask.
torch::Tensor keys_per_row(const torch::Tensor& keep, const torch::Tensor& like, int64_t seq) {
  if (!keep.defined()) return torch::full({1}, static_cast<double>(seq), like.options());
  return keep.sum(-1, /*keepdim=*/true).to(like.scalar_type());
}

}  // namespace

torch::Tensor normalized_attention(torch::Tensor q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& keep, AttentionNormalization normalization,
                                   double dropout_p, bool scaled) {
  const int64_t seq = k.size(-2);
  const double root_d = std::sqrt(static_cast<double>(q.size(-1)));
  if (normalization == AttentionNormalization::squared_relu) {
    // No softmax: the explicit product, so the weights can be relu(a)² / n.
    // The scale applied by the product itself (or to q, where the product is libtorch's)
    auto a = compute::batched_matmul(q, k.transpose(-2, -1), /*heads_last_out=*/false, scaled ? 1.0 / root_d : 1.0);
    auto weights = torch::relu(a).square() / keys_per_row(keep, a, seq);
    if (keep.defined()) weights = weights.masked_fill(keep.logical_not(), 0.0);
    if (dropout_p > 0) weights = fused::dropout(weights, dropout_p);
    return compute::batched_matmul(weights, v, /*heads_last_out=*/true);
  }
  // Softmax and softmax_plus share the fused path: scaling a row of logits by c is
  // scaling that row of q by c before the product (the SDPA divides by √d itself).
  if (!scaled) q = q * root_d;
  if (normalization == AttentionNormalization::softmax_plus) {
    q = q * (keys_per_row(keep, q, seq).log() / std::log(512.0));
  }
  return compat::scaled_dot_product_attention(q, k, v, keep, dropout_p);
}

}  // namespace roformer
