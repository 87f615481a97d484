// What every encoder in this package shares: its configuration, the way it checks
// its inputs, and the interface the bindings and the trainer drive.
//
// Three models implement it: RoFormerV2 (modules.h), GAU-α (gau_alpha.h) and the
// RoBERTa-style baseline (baseline.h) used for the speed comparison the RoFormerV2
// authors make.
#pragma once

#include "attention_normalization.h"
#include "graph_capture.h"

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace roformer {

// The package's dtype names ("float32", "bfloat16", "int64", ...), used in every message.
std::string dtype_name(torch::ScalarType type);

// A tensor's shape as messages print it: [2, 128].
std::string shape_text(const torch::Tensor& t);

// A check of an input: when it fails, an std::invalid_argument with `message`, which
// the boundary (napi_util.h) hands to JS as an Error.
inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// The (batch, seq) key mask attention uses, from a (batch, seq) padding mask (non-zero =
// real token). A row with no real token at all would give softmax over nothing (NaN that
// spreads through gradients); its first key is kept so every row stays finite.
torch::Tensor key_padding_mask(const torch::Tensor& attention_mask);

// Packed rows (several documents in one row): an attention_mask that numbers the
// documents of each row (1, 2, 3, … for the tokens of the first, second, third document,
// each document's tokens contiguous; 0 = padding) instead of marking real tokens with 1.
// Each token then attends only to its own document (padding only to padding), and its
// RoPE position counts from its document's first token, so every document sees exactly
// what it would see alone in a row of its own.
//
// The (batch, 1, seq, seq) block-diagonal keep mask of such a document-number mask.
torch::Tensor document_keep_mask(const torch::Tensor& documents);
// (batch, seq) int64 positions that restart at 0 where the document number changes.
torch::Tensor document_positions(const torch::Tensor& documents);

// Field names follow the Hugging Face config.json keys, so a config read from a
// model directory maps one to one.
struct ModelConfig {
  int64_t vocab_size = 12000;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t type_vocab_size = 2;
  // RoFormerV2 has no position table; this is the length it was trained at (used for
  // position interpolation). The baseline's learned position table has this many rows.
  int64_t max_position_embeddings = 512;
  int64_t pad_token_id = 0;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  double layer_norm_eps = 1e-12;
  double rope_theta = 10000.0;
  // Positions are multiplied by this factor before rotation (position interpolation:
  // trained_length / new_length < 1 stretches a trained model to longer inputs).
  double rope_interpolation_factor = 1.0;
  // How attention weights are normalised (config.json `normalization`).
  AttentionNormalization normalization = AttentionNormalization::softmax;
  // RoFormerV2's block: post-norm as released, or pre-norm (`"norm_position": "pre"`).
  bool pre_norm = false;
  // GAU-α only: the shared q/k width s, whether the logits are divided by √s, biases
  // (and q/k offsets) on or off, and the σ of the port's normal initialisation.
  int64_t attention_key_size = 128;
  bool attention_scale = true;
  bool use_bias = false;
  double initializer_range = 0.02;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Throws std::invalid_argument naming the first inconsistent field.
  void validate(bool needs_even_head_dim) const;
};

// The encoder interface. forward() reads like the paper; the rest is what a
// trainer or a caller needs around it.
class EncoderModel : public torch::nn::Module {
 public:
  explicit EncoderModel(ModelConfig config) : config_(config) {}

  // input_ids (batch, seq) int; token_type_ids (batch, seq) int or undefined (all 0);
  // attention_mask (batch, seq), non-zero at real tokens, or undefined (ids != pad);
  // values above 1 number the documents of packed rows (see document_keep_mask).
  // Returns the final hidden states (batch, seq, hidden).
  virtual torch::Tensor forward(torch::Tensor input_ids, torch::Tensor token_type_ids,
                                torch::Tensor attention_mask) = 0;

  // Masked-language-model logits (n, vocab) for the hidden states at `positions`
  // (flat indices into batch*seq); undefined positions = every position. Computing
  // the head only where there are targets saves most of its cost in training.
  virtual torch::Tensor mlm_logits(const torch::Tensor& hidden, torch::Tensor positions) = 0;

  // Residual scale α (RoFormerV2's warm-up from 0 to 1); models without one ignore it.
  virtual void set_residual_scale(double alpha) {}
  virtual double residual_scale() const { return 1.0; }

  // "roformer-v2", "gau-alpha" or "roberta-baseline".
  virtual std::string architecture() const = 0;

  const ModelConfig& config() const { return config_; }

  // The input checks of prepare_inputs (ids in range, shapes, mask values), on the host,
  // throwing std::invalid_argument that names the offending input; returns the mask's layout.
  MaskLayout check_inputs(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                          const torch::Tensor& attention_mask) const;
  // Validates MLM positions against the number of hidden rows.
  torch::Tensor prepare_positions(const torch::Tensor& positions, int64_t rows) const;

 protected:
  // Validates and normalises the three inputs in place (ids to int64 on `device`,
  // defaults filled in), throwing std::invalid_argument that names the offending
  // input. Checking before the move keeps CPU inputs from forcing a GPU sync.
  // attention_mask becomes attention's keep mask: undefined when no row has padding
  // (so SDPA may take its flash kernel), (batch, 1, 1, seq) for padded rows, or the
  // (batch, 1, seq, seq) block-diagonal mask of packed rows, in which case `positions`
  // (if given) receives the positions within each document; it stays undefined otherwise.
  void prepare_inputs(torch::Tensor& input_ids, torch::Tensor& token_type_ids, torch::Tensor& attention_mask,
                      torch::Device device, torch::Tensor* positions = nullptr) const;
  // The MLM head RoFormerV2 and GAU-α share: the hidden rows at `positions` (all when
  // undefined) times the word embeddings: tied, no dense layer, no norm, no bias.
  torch::Tensor tied_mlm_logits(const torch::Tensor& hidden, torch::Tensor positions,
                                const torch::Tensor& word_embeddings) const;

  ModelConfig config_;
};

}  // namespace roformer
