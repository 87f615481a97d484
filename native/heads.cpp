#include "heads.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace roformer {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool is_integer(const torch::Tensor& t) { return t.scalar_type() == torch::kLong || t.scalar_type() == torch::kInt; }

// Labels arrive from JS on the host; range checks read them there (no device sync).
std::pair<int64_t, int64_t> int_range(const torch::Tensor& t) {
  if (t.numel() == 0) return {0, 0};
  auto [lo, hi] = torch::aminmax(t.to(torch::kCPU, torch::kLong));
  return {lo.item<int64_t>(), hi.item<int64_t>()};
}

void check_probabilities(const torch::Tensor& t, const std::string& name) {
  require(t.is_floating_point(), name + " must be a float tensor of targets in [0, 1], got " + dtype_name(t.scalar_type()));
  if (t.numel() == 0) return;
  auto [lo, hi] = torch::aminmax(t.to(torch::kCPU, torch::kFloat));
  const double min = lo.item<double>(), max = hi.item<double>();
  require(min >= 0 && max <= 1, name + " must hold targets in [0, 1], found " + std::to_string(min < 0 ? min : max));
}

// logsumexp(x ∪ {0}) over the last dimension: log(1 + Σ e^x). The appended 0 keeps
// the result finite when every x is −inf, so the backward exp(x − result) is too.
torch::Tensor log1p_sum_exp(const torch::Tensor& x) {
  auto zero = torch::zeros_like(x.narrow(-1, 0, 1));
  return torch::logsumexp(torch::cat({zero, x}, -1), -1);
}

// logsumexp over the last dimension that is −inf for an all −inf row, with a zero
// (not NaN) gradient there: torch's backward exp(x − result) is exp(−inf + inf) = NaN.
torch::Tensor logsumexp_or_neg_inf(const torch::Tensor& x) {
  auto shift = x.amax(-1, /*keepdim=*/true).detach();
  shift = shift.masked_fill(shift.isinf(), 0);
  auto sum = (x - shift).exp().sum(-1);
  auto empty = sum.eq(0);
  auto lse = sum.masked_fill(empty, 1).log() + shift.squeeze(-1);
  return lse.masked_fill(empty, -kInf);
}

void init_linear(torch::nn::Linear& linear) {
  truncated_normal_(linear->weight, 1.13684723 / std::sqrt(static_cast<double>(linear->weight.size(1))));
}

// Hidden state at [CLS] (position 0) of each sequence.
torch::Tensor cls_state(const torch::Tensor& hidden) { return hidden.select(1, 0); }

void check_class_labels(const torch::Tensor& labels, int64_t rows, int64_t classes, const std::string& what) {
  require(labels.defined(), what + " needs labels: (batch,) class indices");
  require(is_integer(labels), "labels must be int32 or int64 class indices, got " + dtype_name(labels.scalar_type()));
  require(labels.dim() == 1 && labels.size(0) == rows,
          "labels must have shape [" + std::to_string(rows) + "] (one per example), got " + shape_text(labels));
  auto [lo, hi] = int_range(labels);
  require(lo >= 0 && hi < classes, "labels must be in [0, " + std::to_string(classes) + "), got " +
                                       std::to_string(lo < 0 ? lo : hi));
}

}  // namespace

// ---------------------------------------------------------------------------
// ZLPR
// ---------------------------------------------------------------------------

// Losses are computed in float32 (float64 stays float64, for the reference tests).
static torch::Tensor loss_precision(const torch::Tensor& scores) {
  return scores.scalar_type() == torch::kDouble ? scores : scores.to(torch::kFloat);
}

torch::Tensor zlpr_loss(const torch::Tensor& scores, const torch::Tensor& targets, const torch::Tensor& valid) {
  auto s = loss_precision(scores);
  auto t = targets.to(s.device(), s.scalar_type());
  // An entry takes part when it is valid and its score is not the −inf of a mask.
  auto keep = s.ne(-kInf);
  if (valid.defined()) keep = keep.logical_and(valid.to(s.device()));
  // Σ t e^{−s} and Σ (1 − t) e^{s} as logsumexp of −s + log t and s + log(1 − t);
  // t = 0 or 1 gives −inf (no term). masked_fill also drops any inf − inf = NaN of a
  // masked entry, and passes it a zero gradient.
  auto positive = (t.log() - s).masked_fill(keep.logical_not(), -kInf);
  auto negative = (s + (-t).log1p()).masked_fill(keep.logical_not(), -kInf);
  return log1p_sum_exp(positive) + log1p_sum_exp(negative);
}

torch::Tensor sparse_zlpr_loss(const torch::Tensor& scores, const torch::Tensor& positives) {
  auto s = loss_precision(scores);
  auto index = positives.to(s.device(), torch::kLong);
  auto padding = index.lt(0);
  auto positive_scores = s.gather(-1, index.clamp_min(0)).masked_fill(padding, -kInf);
  // log(1 + Σ_pos e^{−s}), padding adding nothing
  auto positive_loss = log1p_sum_exp((-positive_scores).masked_fill(padding, -kInf));
  // log(1 + Σ_neg e^{s}) = all + log(1 − e^{x}), x = lse(pos) − all ≤ 0
  auto all = log1p_sum_exp(s);
  auto x = logsumexp_or_neg_inf(positive_scores) - all;
  // x → 0 when the positives carry all the mass: clamp 1 − e^x away from 0 (log 0 = −inf,
  // and a NaN gradient). −expm1(x) keeps the digits 1 − exp(x) would lose near 0.
  auto negative_loss = all + (-torch::expm1(x)).clamp(1e-7, 1).log();
  return positive_loss + negative_loss;
}

// ---------------------------------------------------------------------------
// [CLS] → linear: classification and multi-label
// ---------------------------------------------------------------------------

ClsLinearHead::ClsLinearHead(const HeadConfig& config, int64_t hidden_size) : TaskHead(config) {
  classifier = register_module(
      "classifier", torch::nn::Linear(torch::nn::LinearOptions(hidden_size, config.num_labels).bias(false)));
  init_linear(classifier);
}

torch::Tensor ClsLinearHead::scores(const torch::Tensor& hidden, const torch::Tensor&, const HeadTargets&) {
  return classifier(cls_state(hidden));
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

torch::Tensor ClassificationHead::loss(const torch::Tensor& scores, const HeadTargets& targets) {
  return torch::nn::functional::cross_entropy(scores.to(torch::kFloat), targets.labels.to(scores.device(), torch::kLong));
}

void ClassificationHead::check(const HeadTargets& targets, const torch::Tensor& real, bool training) const {
  if (!training && !targets.labels.defined()) return;
  const int64_t rows = real.size(0);
  check_class_labels(targets.labels, rows, config_.num_labels, "a classification micro-batch");
}

// ---------------------------------------------------------------------------
// Multi-label
// ---------------------------------------------------------------------------

torch::Tensor MultilabelHead::loss(const torch::Tensor& scores, const HeadTargets& targets) {
  return zlpr_loss(scores, targets.labels, torch::Tensor()).mean();
}

void MultilabelHead::check(const HeadTargets& targets, const torch::Tensor& real, bool training) const {
  const auto& labels = targets.labels;
  if (!training && !labels.defined()) return;
  const int64_t rows = real.size(0);
  require(labels.defined(), "a multilabel micro-batch needs labels: (batch, numLabels) targets in [0, 1]");
  require(labels.dim() == 2 && labels.size(0) == rows && labels.size(1) == config_.num_labels,
          "labels must have shape [" + std::to_string(rows) + ", " + std::to_string(config_.num_labels) +
              "] (batch, numLabels) for a multilabel head, got " + shape_text(labels));
  check_probabilities(labels, "labels");
}

// ---------------------------------------------------------------------------
// Multiple choice
// ---------------------------------------------------------------------------

MultipleChoiceHead::MultipleChoiceHead(const HeadConfig& config, int64_t hidden_size) : TaskHead(config) {
  scorer = register_module("scorer", torch::nn::Linear(torch::nn::LinearOptions(hidden_size, 1).bias(false)));
  init_linear(scorer);
}

torch::Tensor MultipleChoiceHead::scores(const torch::Tensor& hidden, const torch::Tensor&, const HeadTargets& targets) {
  const auto real = targets.choice_mask.to(hidden.device()).ne(0);
  // (examples·options, 1) → (examples, options); a padded option can never win.
  auto scores = scorer(cls_state(hidden)).view({real.size(0), real.size(1)});
  return scores.masked_fill(real.logical_not(), -kInf);
}

torch::Tensor MultipleChoiceHead::loss(const torch::Tensor& scores, const HeadTargets& targets) {
  return torch::nn::functional::cross_entropy(scores.to(torch::kFloat), targets.labels.to(scores.device(), torch::kLong));
}

int64_t MultipleChoiceHead::examples(const HeadTargets& targets, int64_t rows) const {
  return targets.choice_mask.defined() ? targets.choice_mask.size(0) : rows;
}

void MultipleChoiceHead::check(const HeadTargets& targets, const torch::Tensor& tokens, bool training) const {
  const auto& mask = targets.choice_mask;
  const int64_t rows = tokens.size(0);
  require(mask.defined(), "a multiple-choice micro-batch needs choiceMask: (examples, options), 1 at real options");
  require(mask.dim() == 2 && mask.size(0) * mask.size(1) == rows,
          "choiceMask must have shape (examples, options) with examples·options = " + std::to_string(rows) +
              " rows of inputIds, got " + shape_text(mask));
  auto real = mask.to(torch::kCPU).ne(0);
  require(real.any(1).all().item<bool>(), "choiceMask: every example needs at least one real option");
  if (!training && !targets.labels.defined()) return;
  check_class_labels(targets.labels, mask.size(0), mask.size(1), "a multiple-choice micro-batch");
  auto chosen = real.gather(1, targets.labels.to(torch::kCPU, torch::kLong).unsqueeze(1));
  require(chosen.all().item<bool>(), "labels: an example's answer is a padded option (choiceMask is 0 there)");
}

// ---------------------------------------------------------------------------
// GlobalPointer
// ---------------------------------------------------------------------------

GlobalPointerHead::GlobalPointerHead(const HeadConfig& config, const ModelConfig& model) : TaskHead(config) {
  require(config.head_size > 0 && config.head_size % 2 == 0,
          "a span head needs an even headSize > 0 (RoPE rotates pairs), got " + std::to_string(config.head_size));
  query_key = register_module(
      "query_key",
      torch::nn::Linear(torch::nn::LinearOptions(model.hidden_size, config.num_labels * 2 * config.head_size).bias(false)));
  init_linear(query_key);
  // The encoder's own rotary module: same pairing, same base, same interpolation.
  rotary = register_module("rotary", RotaryEmbedding(config.head_size, model.rope_theta, model.rope_interpolation_factor));
}

torch::Tensor GlobalPointerHead::scores(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                        const HeadTargets&) {
  const int64_t batch = hidden.size(0), seq = hidden.size(1), d = config_.head_size;
  // (batch, seq, labels, [q | k]) → q, k (batch, seq, labels, d)
  auto qk = query_key(hidden).view({batch, seq, config_.num_labels, 2, d});
  auto q = qk.select(3, 0), k = qk.select(3, 1);
  auto [cos, sin] = rotary(seq, hidden.device(), q.scalar_type());
  // Tables (seq, d) broadcast over the labels, as in the encoder's attention.
  q = apply_rotary(q, cos.unsqueeze(-2), sin.unsqueeze(-2));
  k = apply_rotary(k, cos.unsqueeze(-2), sin.unsqueeze(-2));
  // s(i, j) = q_i · k_j / sqrt(d): (batch, labels, seq, seq)
  auto s = torch::einsum("bmhd,bnhd->bhmn", {q, k}) / std::sqrt(static_cast<double>(d));
  // Spans start ≤ end, on real tokens. −inf is exact in every float dtype (a constant
  // like −1e12 overflows fp16 to −inf anyway, and inf − inf = NaN follows).
  auto real = attention_mask.to(hidden.device()).ne(0);
  auto valid = real.view({batch, 1, seq, 1}).logical_and(real.view({batch, 1, 1, seq}));
  valid = valid.logical_and(torch::ones({seq, seq}, real.options()).triu());
  return s.masked_fill(valid.logical_not(), -kInf);
}

torch::Tensor GlobalPointerHead::loss(const torch::Tensor& scores, const HeadTargets& targets) {
  const int64_t batch = scores.size(0), labels = scores.size(1), seq = scores.size(2);
  // One ZLPR problem per (example, label) over its seq × seq entries.
  auto flat = scores.reshape({batch * labels, seq * seq});
  if (targets.span_targets.defined()) {
    return zlpr_loss(flat, targets.span_targets.reshape({batch * labels, seq * seq}), torch::Tensor()).mean();
  }
  // Sparse hard labels: rows (example, label, start, end) → per (example, label) a
  // list of flat indices start·seq + end, padded with −1. Built on the host: it is small.
  auto rows = targets.span_labels.to(torch::kCPU, torch::kLong).contiguous();
  auto r = rows.accessor<int64_t, 2>();
  std::vector<std::vector<int64_t>> lists(batch * labels);
  size_t widest = 1;
  for (int64_t n = 0; n < rows.size(0); ++n) {
    auto& list = lists[r[n][0] * labels + r[n][1]];
    list.push_back(r[n][2] * seq + r[n][3]);
    widest = std::max(widest, list.size());
  }
  auto positives = torch::full({batch * labels, static_cast<int64_t>(widest)}, -1, torch::kLong);
  auto p = positives.accessor<int64_t, 2>();
  for (size_t i = 0; i < lists.size(); ++i) {
    for (size_t j = 0; j < lists[i].size(); ++j) p[i][j] = lists[i][j];
  }
  return sparse_zlpr_loss(flat, positives.to(scores.device(), /*non_blocking=*/true)).mean();
}

void GlobalPointerHead::check(const HeadTargets& targets, const torch::Tensor& real, bool training) const {
  const int64_t labels = config_.num_labels, rows = real.size(0), seq = real.size(1);
  const bool hard = targets.span_labels.defined(), soft = targets.span_targets.defined();
  if (!training && !hard && !soft) return;
  require(hard || soft, "a span micro-batch needs spanLabels ((n, 4) rows of example, label, start, end) or "
                        "spanTargets ((batch, numLabels, seq, seq) targets in [0, 1])");
  require(!(hard && soft), "give a span micro-batch spanLabels or spanTargets, not both");
  if (soft) {
    const auto& t = targets.span_targets;
    require(t.dim() == 4 && t.size(0) == rows && t.size(1) == labels && t.size(2) == seq && t.size(3) == seq,
            "spanTargets must have shape [" + std::to_string(rows) + ", " + std::to_string(labels) + ", " +
                std::to_string(seq) + ", " + std::to_string(seq) + "] (batch, numLabels, seq, seq), got " + shape_text(t));
    check_probabilities(t, "spanTargets");
    return;
  }
  const auto& s = targets.span_labels;
  require(is_integer(s), "spanLabels must be int32 or int64, got " + dtype_name(s.scalar_type()));
  require(s.dim() == 2 && s.size(1) == 4,
          "spanLabels must have shape (n, 4): rows of (example, label, start, end), got " + shape_text(s));
  if (s.numel() == 0) return;
  auto c = s.to(torch::kCPU, torch::kLong);
  auto in_range = [&](int64_t column, int64_t limit, const char* name) {
    auto [lo, hi] = int_range(c.select(1, column));
    require(lo >= 0 && hi < limit, std::string("spanLabels: ") + name + " must be in [0, " + std::to_string(limit) +
                                       "), got " + std::to_string(lo < 0 ? lo : hi));
  };
  in_range(0, rows, "example (column 0)");
  in_range(1, labels, "label (column 1)");
  in_range(2, seq, "start (column 2)");
  in_range(3, seq, "end (column 3, inclusive)");
  require(c.select(1, 2).le(c.select(1, 3)).all().item<bool>(),
          "spanLabels: a span's start is after its end (ends are inclusive: a one-token span has start = end)");
  // A label on padding would meet a −inf score: an infinite loss, not a clear error.
  auto on_real = real.index({c.select(1, 0), c.select(1, 2)}).logical_and(real.index({c.select(1, 0), c.select(1, 3)}));
  require(on_real.all().item<bool>(), "spanLabels: a span starts or ends on padding (attentionMask is 0 there)");
}

// ---------------------------------------------------------------------------

std::shared_ptr<TaskHead> make_head(const HeadConfig& config, const ModelConfig& model) {
  require(config.num_labels > 0, "numLabels must be a positive integer, got " + std::to_string(config.num_labels));
  if (config.kind == "classification") return std::make_shared<ClassificationHead>(config, model.hidden_size);
  if (config.kind == "multilabel") return std::make_shared<MultilabelHead>(config, model.hidden_size);
  if (config.kind == "multiple-choice") return std::make_shared<MultipleChoiceHead>(config, model.hidden_size);
  if (config.kind == "span") return std::make_shared<GlobalPointerHead>(config, model);
  throw std::invalid_argument("unknown head kind '" + config.kind +
                              "': use classification, multilabel, multiple-choice or span");
}

}  // namespace roformer
