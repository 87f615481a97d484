#include "gau_alpha.h"

#include "compute_weight.h"
#include "kernels/fused_ops.h"

namespace roformer {

void validate_gau_alpha_config(const ModelConfig& config) {
  config.validate(/*needs_even_head_dim=*/false);
  require(config.attention_key_size > 0 && config.attention_key_size % 2 == 0,
          "config: attention_key_size must be a positive even number (RoPE rotates pairs), got " +
              std::to_string(config.attention_key_size));
  require(config.initializer_range > 0.0, "config: initializer_range must be positive");
}

ScaleOffsetImpl::ScaleOffsetImpl(int64_t size, bool offset) {
  weight = register_parameter("weight", torch::ones({size}));
  if (offset) bias = register_parameter("bias", torch::zeros({size}));
}

torch::Tensor ScaleOffsetImpl::forward(const torch::Tensor& x) const {
  return bias.defined() ? torch::addcmul(bias, x, weight) : x * weight;
}

GatedAttentionUnitImpl::GatedAttentionUnitImpl(const ModelConfig& config)
    : intermediate_size(config.intermediate_size),
      attention_key_size(config.attention_key_size),
      attention_scale(config.attention_scale),
      dropout(config.attention_probs_dropout_prob),
      normalization(config.normalization) {
  const auto dense = [&](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(config.use_bias));
  };
  i_dense = register_module("i_dense", dense(config.hidden_size, 2 * intermediate_size + attention_key_size));
  o_dense = register_module("o_dense", dense(intermediate_size, config.hidden_size));
  q_scaleoffset = register_module("q_scaleoffset", ScaleOffset(attention_key_size, config.use_bias));
  k_scaleoffset = register_module("k_scaleoffset", ScaleOffset(attention_key_size, config.use_bias));
}

compute::LinearAndInput GatedAttentionUnitImpl::forward(const torch::Tensor& x, const torch::Tensor& keep,
                                                        const torch::Tensor& cos, const torch::Tensor& sin) {
  // One projection for the gate u, the values v and the shared q/k base z; x passed on with it.
  auto [projected, x_on] = compute::linear_passing_input(x, i_dense);
  auto parts = torch::silu(projected).split_with_sizes({intermediate_size, intermediate_size, attention_key_size}, -1);
  const auto& u = parts[0];
  const auto& v = parts[1];
  const auto& z = parts[2];
  auto q = apply_rotary(q_scaleoffset(z), cos, sin);
  auto k = apply_rotary(k_scaleoffset(z), cos, sin);
  // A single head: (batch, 1, seq, ·) for the attention, back to (batch, seq, e).
  auto attended = normalized_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), keep, normalization,
                                       is_training() ? dropout : 0.0, attention_scale)
                      .squeeze(1);
  return {compute::linear(u * attended, o_dense), x_on};
}

GauLayerImpl::GauLayerImpl(const ModelConfig& config) {
  gau = register_module("gau", GatedAttentionUnit(config));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  norm = register_module("norm", RMSNorm(config.layer_norm_eps));
}

torch::Tensor GauLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& keep, const torch::Tensor& cos,
                                    const torch::Tensor& sin) {
  // The unit's first product passes x on to the residual (compute::linear_passing_input), its
  // backward summing x's two gradients in the product.
  auto [out, x_on] = gau(x, keep, cos, sin);
  return norm(x_on + fused::dropout(out, is_training() ? dropout->options.p() : 0.0));
}

GauAlpha::GauAlpha(const ModelConfig& config) : EncoderModel(config) {
  validate_gau_alpha_config(config);
  word_embeddings = register_module("word_embeddings", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", torch::nn::Embedding(config.type_vocab_size, config.hidden_size));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  norm = register_module("norm", RMSNorm(config.layer_norm_eps));
  rotary = register_module(
      "rotary", RotaryEmbedding(config.attention_key_size, config.rope_theta, config.rope_interpolation_factor));
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layer->push_back(GauLayer(config));
  reset_parameters();
}

void GauAlpha::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    const bool is_scale = name.find("scaleoffset.weight") != std::string::npos;
    if (p.dim() == 2) {
      p.normal_(0.0, config_.initializer_range);
    } else {
      is_scale ? p.fill_(1.0) : p.zero_();
    }
  }
  word_embeddings->weight[config_.pad_token_id].zero_();
}

torch::Tensor GauAlpha::forward(torch::Tensor input_ids, torch::Tensor token_type_ids, torch::Tensor attention_mask) {
  torch::Tensor positions;  // packed rows: positions within each document
  prepare_inputs(input_ids, token_type_ids, attention_mask, word_embeddings->weight.device(), &positions);
  const int64_t seq = input_ids.size(1);

  auto x = norm(compute::embedding(word_embeddings->weight, input_ids) +
                compute::embedding(token_type_embeddings->weight, token_type_ids));
  x = fused::dropout(x, is_training() ? dropout->options.p() : 0.0);

  // As RoFormerV2: (seq, s) tables, or (batch, seq, s) at each token's position within its
  // document for packed rows; the key mask is undefined (no padding), (batch, 1, 1, seq)
  // (padding) or (batch, 1, seq, seq) (packed documents), all broadcasting over the one head.
  auto [cos, sin] = positions.defined() ? rotary->at_positions(positions, x.scalar_type())
                                        : rotary(seq, x.device(), x.scalar_type());
  const auto& keep = attention_mask;
  for (auto& unit : *layer) x = unit->as<GauLayerImpl>()->forward(x, keep, cos, sin);
  return x;
}

torch::Tensor GauAlpha::mlm_logits(const torch::Tensor& hidden, torch::Tensor positions) {
  return tied_mlm_logits(hidden, std::move(positions), word_embeddings->weight);
}

}  // namespace roformer
