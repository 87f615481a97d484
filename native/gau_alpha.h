// GAU-α: the RoFormerV2 authors' next model. One Gated Attention Unit ("Transformer
// Quality in Linear Time") replaces attention + feed-forward, with a single head:
//
//   x = Norm(Dropout(E_tok[ids] + E_seg[segment_ids]))        no position embedding
//   for each layer:
//     u, v, z = split(swish(x W_i), [e, e, s])                 W_i: hidden → 2e + s
//     q, k = RoPE(z ⊙ γ_q), RoPE(z ⊙ γ_k)                       over the s dimensions
//     A = normalise(q kᵀ / √s)                                 softmax_plus by default
//     x = Norm(x + Dropout((u ⊙ (Dropout(A) v)) W_o))          W_o: e → hidden; post-norm
//   mlm_logits = x · E_tokᵀ                                    tied, no bias
//
// Norm is RMS normalisation without gain. Submodule names follow the PyTorch port
// (gau.i_dense, gau.q_scaleoffset, ...), so lib/model/checkpoint-names.ts maps them
// with a table.
#pragma once

#include "modules.h"

namespace roformer {

// x ⊙ γ (+ β when `offset`): the per-dimension scale that turns the shared z into q or k.
class ScaleOffsetImpl : public torch::nn::Module {
 public:
  ScaleOffsetImpl(int64_t size, bool offset);
  torch::Tensor forward(const torch::Tensor& x) const;

  torch::Tensor weight, bias;  // bias undefined without `offset`
};
TORCH_MODULE(ScaleOffset);

// The gated attention unit: O = (u ⊙ (A v)) W_o.
class GatedAttentionUnitImpl : public torch::nn::Module {
 public:
  explicit GatedAttentionUnitImpl(const ModelConfig& config);
  // x (batch, seq, hidden); keep bool broadcastable to (batch, 1, seq, seq) or undefined;
  // cos/sin the rotary tables over the s dimensions.
  // The unit's output y, and x passed on for the layer's residual (compute::linear_passing_input:
  // the [U|V|Z] product's backward adds the residual's gradient of x itself).
  compute::LinearAndInput forward(const torch::Tensor& x, const torch::Tensor& keep, const torch::Tensor& cos,
                                  const torch::Tensor& sin);

  int64_t intermediate_size, attention_key_size;
  bool attention_scale;
  double dropout;
  AttentionNormalization normalization;
  torch::nn::Linear i_dense{nullptr}, o_dense{nullptr};
  ScaleOffset q_scaleoffset{nullptr}, k_scaleoffset{nullptr};
};
TORCH_MODULE(GatedAttentionUnit);

// One GAU layer: x ← Norm(x + Dropout(GAU(x))).
class GauLayerImpl : public torch::nn::Module {
 public:
  explicit GauLayerImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& keep, const torch::Tensor& cos,
                        const torch::Tensor& sin);

  GatedAttentionUnit gau{nullptr};
  torch::nn::Dropout dropout{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(GauLayer);

class GauAlpha : public EncoderModel {
 public:
  explicit GauAlpha(const ModelConfig& config);

  torch::Tensor forward(torch::Tensor input_ids, torch::Tensor token_type_ids,
                        torch::Tensor attention_mask) override;
  torch::Tensor mlm_logits(const torch::Tensor& hidden, torch::Tensor positions) override;
  std::string architecture() const override { return "gau-alpha"; }

  // The port's initialisation: every dense and embedding weight normal(0, initializer_range),
  // the pad token's embedding row zero, scales 1, offsets and biases 0.
  void reset_parameters();

  torch::nn::Embedding word_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::Dropout dropout{nullptr};
  RMSNorm norm{nullptr};
  RotaryEmbedding rotary{nullptr};
  torch::nn::ModuleList layer{nullptr};
};

// Checks what GAU-α needs of a config beyond the shared fields (s positive and even).
void validate_gau_alpha_config(const ModelConfig& config);

}  // namespace roformer
