// The RoBERTa-style baseline the RoFormerV2 authors compare training speed with:
// the same sizes, but everything RoFormerV2 subtracts is put back — biases in every
// linear layer, LayerNorm with gain and bias, learned absolute position embeddings,
// a GELU feed-forward, and the RoBERTa MLM head (dense → GELU → LayerNorm → tied
// decoder + bias). It exists so both models run through one benchmark harness.
#pragma once

#include "modules.h"

namespace roformer {

class BaselineBlockImpl : public torch::nn::Module {
 public:
  explicit BaselineBlockImpl(const ModelConfig& config);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& keep);

  SelfAttention attention{nullptr};
  torch::nn::LayerNorm attention_norm{nullptr};
  torch::nn::Linear intermediate{nullptr}, output{nullptr};
  torch::nn::LayerNorm output_norm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(BaselineBlock);

class RobertaBaseline : public EncoderModel {
 public:
  explicit RobertaBaseline(const ModelConfig& config);

  torch::Tensor forward(torch::Tensor input_ids, torch::Tensor token_type_ids,
                        torch::Tensor attention_mask) override;
  torch::Tensor mlm_logits(const torch::Tensor& hidden, torch::Tensor positions) override;
  std::string architecture() const override { return "roberta-baseline"; }

  // BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorm gains.
  void reset_parameters();

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm embeddings_norm{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::ModuleList layer{nullptr};
  torch::nn::Linear lm_dense{nullptr};
  torch::nn::LayerNorm lm_norm{nullptr};
  torch::Tensor lm_bias;
};

}  // namespace roformer
