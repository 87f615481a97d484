#include "baseline.h"

#include "compute_weight.h"
#include "kernels/fused_ops.h"

#include <stdexcept>

namespace roformer {

namespace {
torch::nn::LayerNorm layer_norm(const ModelConfig& config) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.hidden_size}).eps(config.layer_norm_eps));
}

// LayerNorm computed in float32 for reduced-precision inputs (as autocast does on
// CUDA): on the CPU, libtorch 1.13's autocast passes bf16 activations straight to a
// kernel that rejects bf16 input with fp32 gain and bias, and weights cast to bf16
// meet fp32 activations the other way round. The result keeps the input's dtype
// unless the weights are fp32 (mixed precision keeps the residual stream in fp32).
torch::Tensor normalize(torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  const auto weight_dtype = norm->weight.scalar_type();
  if (x.scalar_type() == weight_dtype && weight_dtype != torch::kHalf && weight_dtype != torch::kBFloat16) return norm(x);
  auto y = torch::layer_norm(x.to(torch::kFloat), norm->options.normalized_shape(), norm->weight.to(torch::kFloat),
                             norm->bias.to(torch::kFloat), norm->options.eps());
  return weight_dtype == torch::kFloat ? y : y.to(x.scalar_type());
}
}  // namespace

BaselineBlockImpl::BaselineBlockImpl(const ModelConfig& config) {
  attention = register_module(
      "attention", SelfAttention(config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob,
                                 /*bias=*/true));
  attention_norm = register_module("attention_norm", layer_norm(config));
  intermediate =
      register_module("intermediate", torch::nn::Linear(config.hidden_size, config.intermediate_size));
  output = register_module("output", torch::nn::Linear(config.intermediate_size, config.hidden_size));
  output_norm = register_module("output_norm", layer_norm(config));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
}

// Dropout through fused::dropout, as RoFormerV2's: the CPU's vectorised kernel, libtorch's elsewhere.
torch::Tensor BaselineBlockImpl::forward(torch::Tensor x, const torch::Tensor& keep) {
  const double p = is_training() ? dropout->options.p() : 0.0;
  // As RoFormerV2's block: each sublayer's first product passes x on to the residual
  // (compute::linear_passing_input), its backward summing x's two gradients in the product.
  auto [attended, x_on] = attention->forward_passing_input(x, keep, torch::Tensor(), torch::Tensor());
  x = normalize(attention_norm, x_on + fused::dropout(attended, p));
  auto [hidden, x_on_ffn] = compute::linear_passing_input(x, intermediate);
  return normalize(output_norm, x_on_ffn + fused::dropout(compute::linear(torch::gelu(hidden), output), p));
}

RobertaBaseline::RobertaBaseline(const ModelConfig& config) : EncoderModel(config) {
  config.validate(/*needs_even_head_dim=*/false);
  word_embeddings = register_module("word_embeddings", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  position_embeddings = register_module(
      "position_embeddings", torch::nn::Embedding(config.max_position_embeddings, config.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", torch::nn::Embedding(config.type_vocab_size, config.hidden_size));
  embeddings_norm = register_module("embeddings_norm", layer_norm(config));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layer->push_back(BaselineBlock(config));
  lm_dense = register_module("lm_dense", torch::nn::Linear(config.hidden_size, config.hidden_size));
  lm_norm = register_module("lm_norm", layer_norm(config));
  lm_bias = register_parameter("lm_bias", torch::zeros({config.vocab_size}));
  reset_parameters();
}

void RobertaBaseline::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    const bool is_norm = name.find("norm") != std::string::npos;
    if (p.dim() == 1) {
      is_norm && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0 ? p.fill_(1.0) : p.zero_();
    } else {
      p.normal_(0.0, 0.02);
    }
  }
}

torch::Tensor RobertaBaseline::forward(torch::Tensor input_ids, torch::Tensor token_type_ids,
                                       torch::Tensor attention_mask) {
  torch::Tensor positions;  // packed rows: positions within each document
  prepare_inputs(input_ids, token_type_ids, attention_mask, word_embeddings->weight.device(), &positions);
  const int64_t seq = input_ids.size(1);
  if (seq > config_.max_position_embeddings) {
    throw std::invalid_argument("input_ids has " + std::to_string(seq) +
                                " positions, but the baseline's position table (max_position_embeddings) has " +
                                std::to_string(config_.max_position_embeddings));
  }
  if (!positions.defined()) positions = torch::arange(seq, input_ids.options());
  auto x = compute::embedding(word_embeddings->weight, input_ids) + compute::embedding(position_embeddings->weight, positions) +
           compute::embedding(token_type_embeddings->weight, token_type_ids);
  x = fused::dropout(normalize(embeddings_norm, x), is_training() ? dropout->options.p() : 0.0);
  for (auto& block : *layer) x = block->as<BaselineBlockImpl>()->forward(x, attention_mask);
  return x;
}

torch::Tensor RobertaBaseline::mlm_logits(const torch::Tensor& hidden, torch::Tensor positions) {
  auto rows = hidden.reshape({-1, config_.hidden_size});
  positions = prepare_positions(positions, rows.size(0));
  if (positions.defined()) rows = rows.index_select(0, positions.to(rows.device()));
  auto h = normalize(lm_norm, torch::gelu(compute::linear(rows, lm_dense)));
  return compute::linear(h, word_embeddings->weight, lm_bias);
}

}  // namespace roformer
