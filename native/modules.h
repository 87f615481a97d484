// RoFormerV2, its building blocks in the order the forward pass uses them.
//
//   x = Norm(Dropout(E_tok[ids] + E_seg[segment_ids]))    no position embedding
//   for each block:
//     x = Norm(x + α · Dropout(Attention(x)))             RoPE on q and k, no bias
//     x = Norm(x + α · Dropout(relu(x W1) W2))            no bias
//   (pre-norm variant: x = x + α · Dropout(Sublayer(Norm(x))), and a final Norm)
//   mlm_logits = x · E_tokᵀ                               tied, no bias
//
// Norm is RMS normalisation with no gain. Submodule names follow the Hugging Face
// layout closely (query/key/value, intermediate/output), so the checkpoint name
// mapping in lib/model/checkpoint-names.ts stays a simple table; q, k and v are packed
// into one projection inside, and unpacked under those names outside (packed_qkv.h).
#pragma once

#include "compute_weight.h"
#include "encoder_model.h"

#include <torch/torch.h>

#include <utility>

namespace roformer {

// Rotary position embedding, interleaved pairs: for head dim d the pair
// (x_2i, x_2i+1) at position p is rotated by the angle p·θ_i, θ_i = base^(-2i/d).
// The tables are computed for whatever length is asked: no fixed 512-row table.
class RotaryEmbeddingImpl : public torch::nn::Module {
 public:
  RotaryEmbeddingImpl(int64_t head_dim, double base = 10000.0, double interpolation_factor = 1.0);

  // cos and sin tables of shape (seq_len, head_dim), each angle repeated for its pair.
  // Computed in float64 for a float64 model, float32 otherwise.
  std::pair<torch::Tensor, torch::Tensor> forward(int64_t seq_len, torch::Device device,
                                                  torch::ScalarType dtype) const;
  // The same tables at given positions (batch, seq) (packed rows): (batch, seq, head_dim).
  std::pair<torch::Tensor, torch::Tensor> at_positions(const torch::Tensor& positions, torch::ScalarType dtype) const;

  int64_t head_dim;
  double base;
  double interpolation_factor;
};
TORCH_MODULE(RotaryEmbedding);

// Rotates x (..., seq, head_dim) by the tables from RotaryEmbedding.
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// y = x / sqrt(mean(x²) + eps) over the last dimension. No trainable gain.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(double eps = 1e-12) : eps(eps) {}
  torch::Tensor forward(const torch::Tensor& x) const;
  double eps;
};
TORCH_MODULE(RMSNorm);

// Multi-head self-attention. RoPE is applied to q and k only (pass undefined
// cos/sin for none, as the baseline does); `keep` masks padded keys; the weights
// are normalised as `normalization` says (attention_normalization.h). q, k and v come
// from one packed projection, `qkv` (packed_qkv.h: outside code sees query, key, value).
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t hidden_size, int64_t num_heads, double dropout, bool bias,
                    AttentionNormalization normalization = AttentionNormalization::softmax);
  // x (batch, seq, hidden); keep bool broadcastable to (batch, 1, seq, seq) or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& keep, const torch::Tensor& cos,
                        const torch::Tensor& sin);
  // The same, and x passed on for the block's residual (compute::linear_passing_input: the QKV
  // product's backward adds the residual's gradient of x itself).
  compute::LinearAndInput forward_passing_input(const torch::Tensor& x, const torch::Tensor& keep,
                                                const torch::Tensor& cos, const torch::Tensor& sin);
  // Attention over the packed q/k/v projection (batch, seq, 3·hidden).
  torch::Tensor attend(const torch::Tensor& projected, const torch::Tensor& keep, const torch::Tensor& cos,
                       const torch::Tensor& sin);

  int64_t num_heads;
  double dropout;
  AttentionNormalization normalization;
  torch::nn::Linear qkv{nullptr}, output{nullptr};
};
TORCH_MODULE(SelfAttention);

// One block: attention then a ReLU feed-forward, each added back with the residual
// scale α. Post-norm (as released) normalises each sum; pre-norm (`norm_position`
// "pre") normalises each sublayer's input instead, and the model its final output.
class EncoderBlockImpl : public torch::nn::Module {
 public:
  explicit EncoderBlockImpl(const ModelConfig& config);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& keep, const torch::Tensor& cos,
                        const torch::Tensor& sin);
  torch::Tensor add_and_norm(const torch::Tensor& x, const torch::Tensor& branch);

  // Not a parameter: set by the trainer as it warms α from 0 to 1.
  double alpha = 1.0;
  bool pre_norm = false;
  SelfAttention attention{nullptr};
  torch::nn::Linear intermediate{nullptr}, output{nullptr};
  torch::nn::Dropout dropout{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(EncoderBlock);

class RoFormerV2 : public EncoderModel {
 public:
  explicit RoFormerV2(const ModelConfig& config);

  torch::Tensor forward(torch::Tensor input_ids, torch::Tensor token_type_ids,
                        torch::Tensor attention_mask) override;
  torch::Tensor mlm_logits(const torch::Tensor& hidden, torch::Tensor positions) override;
  void set_residual_scale(double alpha) override;
  double residual_scale() const override { return alpha_; }
  std::string architecture() const override { return "roformer-v2"; }

  // The authors' initialisation: truncated normal (±2σ), σ = 1.13684723 / sqrt(fan_in) · L^(-1/2).
  void reset_parameters();

  torch::nn::Embedding word_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::Dropout dropout{nullptr};
  RMSNorm norm{nullptr};
  RotaryEmbedding rotary{nullptr};
  torch::nn::ModuleList layer{nullptr};

 private:
  double alpha_ = 1.0;
};

// Fills `weight` from a normal(0, std) truncated to ±2·std (libtorch 1.13 has no
// trunc_normal_ in C++): inverse-CDF sampling of the truncated range.
void truncated_normal_(torch::Tensor weight, double std);

}  // namespace roformer
