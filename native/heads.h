// Task heads for supervised (multi-task) training, reading the encoder's last
// hidden states (spec §3):
//
//   classification     logits = h[CLS] W                    softmax cross-entropy
//   multilabel         logits = h[CLS] W                    ZLPR ("softmax + CE" for multi-label)
//   multiple-choice    score  = h[CLS] w, per option        softmax cross-entropy across the options
//   span               s(i,j) = (R_i q_i)ᵀ(R_j k_j)/sqrt(d)  GlobalPointer, ZLPR over the i ≤ j entries
//
// No biases anywhere (as the encoder). Losses are computed in float32 whatever the
// autocast dtype, and are means over the examples of the micro-batch.
#pragma once

#include "encoder_model.h"
#include "modules.h"

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

namespace roformer {

// What a head is: enough to rebuild it from a checkpoint (heads.json in TypeScript).
struct HeadConfig {
  std::string kind;        // classification | multilabel | multiple-choice | span
  int64_t num_labels = 1;  // classes / labels / span types; 1 for multiple-choice
  int64_t head_size = 64;  // span: the q/k size per label
};

// The labels of one micro-batch, per kind (undefined where the kind has none).
struct HeadTargets {
  torch::Tensor labels;         // classification, multiple-choice: (batch,) int; multilabel: (batch, labels) float in [0, 1]
  torch::Tensor choice_mask;    // multiple-choice: (examples, options), non-zero at real options
  torch::Tensor span_labels;    // span, hard: (n, 4) int rows (example, label, start, end), end inclusive
  torch::Tensor span_targets;   // span, soft: (batch, labels, seq, seq) float in [0, 1]
};

// ---------------------------------------------------------------------------
// ZLPR, the multi-label "softmax + cross-entropy" (kexue.fm/archives/7359):
//   L = log(1 + Σ_neg e^{s}) + log(1 + Σ_pos e^{−s})
// over the last dimension, computed in log space as logsumexp with an appended 0.
// Masked scores (valid = false, or score −inf) are −inf on both sides: they add
// nothing to either sum and get a zero gradient, never NaN.
// ---------------------------------------------------------------------------

// Dense targets t ∈ [0, 1] (hard labels are t ∈ {0, 1}):
//   L = log(1 + Σ t e^{−s}) + log(1 + Σ (1 − t) e^{s}). Returns one loss per row.
torch::Tensor zlpr_loss(const torch::Tensor& scores, const torch::Tensor& targets, const torch::Tensor& valid);

// Sparse hard targets: `positives` (rows, P) indices into the last dimension of
// `scores` (rows, n), padded with −1. The negatives' sum is never formed directly:
//   log(1 + Σ_neg e^s) = log(1 + Σ_all e^s) + log(1 − e^{lse(pos) − log(1 + Σ_all e^s)})
// where the second log is clamped away from log(0) (x → 0 when the positives carry
// all the mass), which would otherwise give −inf and NaN gradients.
torch::Tensor sparse_zlpr_loss(const torch::Tensor& scores, const torch::Tensor& positives);

// ---------------------------------------------------------------------------
// The heads
// ---------------------------------------------------------------------------

class TaskHead : public torch::nn::Module {
 public:
  explicit TaskHead(HeadConfig config) : config_(std::move(config)) {}

  // Scores from the encoder's hidden states (batch, seq, hidden): class logits
  // (batch, labels), option scores (examples, options), span scores (batch, labels,
  // seq, seq). Masked entries (padded options, spans outside i ≤ j or on padding)
  // are −inf. `attention_mask` is (batch, seq), non-zero at real tokens.
  virtual torch::Tensor scores(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                               const HeadTargets& targets) = 0;

  // The loss of the scores (float32, mean over the micro-batch's examples).
  virtual torch::Tensor loss(const torch::Tensor& scores, const HeadTargets& targets) = 0;

  // Throws std::invalid_argument naming the field when the labels do not fit this
  // head and a batch whose real tokens are `real` (rows, seq), bool, on the host.
  // Labels are optional where `training` is false (prediction).
  virtual void check(const HeadTargets& targets, const torch::Tensor& real, bool training) const = 0;

  // Examples in a micro-batch of `rows` sequences (options are rows of one example).
  virtual int64_t examples(const HeadTargets& targets, int64_t rows) const { return rows; }

  const HeadConfig& config() const { return config_; }

 protected:
  HeadConfig config_;
};

// [CLS] → linear (no bias) → one logit per label: the scores of the two heads below,
// which differ in their loss and labels.
class ClsLinearHead : public TaskHead {
 public:
  ClsLinearHead(const HeadConfig& config, int64_t hidden_size);
  torch::Tensor scores(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                       const HeadTargets& targets) override;

  torch::nn::Linear classifier{nullptr};
};

// [CLS] → linear (no bias) → softmax cross-entropy; also pair matching / NLI.
class ClassificationHead : public ClsLinearHead {
 public:
  using ClsLinearHead::ClsLinearHead;
  torch::Tensor loss(const torch::Tensor& scores, const HeadTargets& targets) override;
  void check(const HeadTargets& targets, const torch::Tensor& real, bool training) const override;
};

// [CLS] → linear → one logit per label, ZLPR loss with threshold 0 (hard or soft targets).
class MultilabelHead : public ClsLinearHead {
 public:
  using ClsLinearHead::ClsLinearHead;
  torch::Tensor loss(const torch::Tensor& scores, const HeadTargets& targets) override;
  void check(const HeadTargets& targets, const torch::Tensor& real, bool training) const override;
};

// Each (context, option) sequence → [CLS] → linear(hidden, 1); softmax across the
// options of one example. Rows are examples × options, padded options masked.
class MultipleChoiceHead : public TaskHead {
 public:
  MultipleChoiceHead(const HeadConfig& config, int64_t hidden_size);
  torch::Tensor scores(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                       const HeadTargets& targets) override;
  torch::Tensor loss(const torch::Tensor& scores, const HeadTargets& targets) override;
  void check(const HeadTargets& targets, const torch::Tensor& real, bool training) const override;
  int64_t examples(const HeadTargets& targets, int64_t rows) const override;

  torch::nn::Linear scorer{nullptr};
};

// GlobalPointer (kexue.fm/archives/8373): per label a q/k projection, RoPE on both
// with exactly the encoder's interleaved pairing (the same RotaryEmbedding and
// apply_rotary), s(i, j) = q_i·k_j / sqrt(d) for i ≤ j on real tokens.
// ZLPR over the flattened seq × seq scores of each (example, label); the loss is the
// mean over examples and labels, as the authors' global_pointer_crossentropy.
class GlobalPointerHead : public TaskHead {
 public:
  GlobalPointerHead(const HeadConfig& config, const ModelConfig& model);
  torch::Tensor scores(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                       const HeadTargets& targets) override;
  torch::Tensor loss(const torch::Tensor& scores, const HeadTargets& targets) override;
  void check(const HeadTargets& targets, const torch::Tensor& real, bool training) const override;

  // Per label [q | k], each head_size wide: weight (labels·2·head_size, hidden).
  torch::nn::Linear query_key{nullptr};
  RotaryEmbedding rotary{nullptr};
};

// Builds a head (std::invalid_argument for an unknown kind or bad sizes); weights
// from the encoder's truncated-normal rule, σ = 1.13684723 / sqrt(fan_in).
std::shared_ptr<TaskHead> make_head(const HeadConfig& config, const ModelConfig& model);

}  // namespace roformer
