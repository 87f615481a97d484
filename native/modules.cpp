#include "modules.h"

#include "compat.h"
#include "compute_weight.h"
#include "graph_capture.h"
#include "kernels/fused_ops.h"

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace roformer {

namespace {

std::string dtype_string(const torch::Tensor& t) { return dtype_name(t.scalar_type()); }

bool is_integer_dtype(const torch::Tensor& t) {
  return t.scalar_type() == torch::kInt || t.scalar_type() == torch::kLong;
}

// Range check of an id tensor against [0, limit): out-of-range ids would otherwise
// be an opaque index error deep inside the embedding (or a device-side assert on CUDA).
void check_id_range(const torch::Tensor& ids, int64_t limit, const char* name, const char* limit_name) {
  if (ids.numel() == 0) return;
  auto [lo, hi] = torch::aminmax(ids);
  const int64_t min_id = lo.item<int64_t>(), max_id = hi.item<int64_t>();
  if (min_id < 0) {
    throw std::invalid_argument(std::string(name) + " contains the negative id " + std::to_string(min_id) +
                                " (ids must be in [0, " + limit_name + " = " + std::to_string(limit) + "))");
  }
  if (max_id >= limit) {
    throw std::invalid_argument(std::string(name) + " contains the id " + std::to_string(max_id) + ", but " +
                                limit_name + " is " + std::to_string(limit));
  }
}

}  // namespace

std::string dtype_name(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat: return "float32";
    case torch::kDouble: return "float64";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kInt: return "int32";
    case torch::kLong: return "int64";
    case torch::kShort: return "int16";
    case torch::kChar: return "int8";
    case torch::kByte: return "uint8";
    case torch::kBool: return "bool";
    default: return c10::toString(type);
  }
}

std::string shape_text(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

torch::Tensor key_padding_mask(const torch::Tensor& attention_mask) {
  auto keep = attention_mask.ne(0);
  keep.select(1, 0).logical_or_(keep.any(1).logical_not());
  return keep;
}

torch::Tensor document_keep_mask(const torch::Tensor& documents) {
  return documents.unsqueeze(-1).eq(documents.unsqueeze(-2)).unsqueeze(1);
}

torch::Tensor document_positions(const torch::Tensor& documents) {
  const int64_t seq = documents.size(1);
  auto index = torch::arange(seq, documents.options().dtype(torch::kLong)).expand_as(documents);
  // A document starts where its number differs from the previous token's; each token's
  // position is its distance from the latest start (a running maximum of start indices).
  auto starts = torch::ones_like(documents, torch::kBool);
  starts.narrow(1, 1, seq - 1).copy_(documents.narrow(1, 1, seq - 1).ne(documents.narrow(1, 0, seq - 1)));
  auto latest_start = std::get<0>(torch::cummax(index * starts, 1));
  return index - latest_start;
}

// ---------------------------------------------------------------------------
// ModelConfig and the shared input checks of EncoderModel
// ---------------------------------------------------------------------------

void ModelConfig::validate(bool needs_even_head_dim) const {
  auto positive = [](int64_t value, const char* name) {
    require(value > 0, std::string("config: ") + name + " must be positive, got " + std::to_string(value));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(intermediate_size, "intermediate_size");
  positive(type_vocab_size, "type_vocab_size");
  positive(max_position_embeddings, "max_position_embeddings");
  require(hidden_size % num_attention_heads == 0,
          "config: hidden_size (" + std::to_string(hidden_size) + ") must be divisible by num_attention_heads (" +
              std::to_string(num_attention_heads) + ")");
  require(!needs_even_head_dim || head_dim() % 2 == 0,
          "config: the head size hidden_size / num_attention_heads = " + std::to_string(head_dim()) +
              " must be even for rotary position embeddings");
  require(pad_token_id >= 0 && pad_token_id < vocab_size,
          "config: pad_token_id (" + std::to_string(pad_token_id) + ") must be in [0, vocab_size)");
  auto probability = [](double p, const char* name) {
    require(p >= 0.0 && p < 1.0, std::string("config: ") + name + " must be in [0, 1), got " + std::to_string(p));
  };
  probability(hidden_dropout_prob, "hidden_dropout_prob");
  probability(attention_probs_dropout_prob, "attention_probs_dropout_prob");
  require(layer_norm_eps > 0.0, "config: layer_norm_eps must be positive");
  require(rope_theta > 1.0, "config: rope_theta must be greater than 1");
  require(rope_interpolation_factor > 0.0, "config: rope_interpolation_factor must be positive");
}

MaskLayout EncoderModel::check_inputs(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                      const torch::Tensor& attention_mask) const {
  require(input_ids.defined(), "input_ids is required");
  require(is_integer_dtype(input_ids), "input_ids must be an int32 or int64 tensor, got " + dtype_string(input_ids));
  require(input_ids.dim() == 2, "input_ids must have shape (batch, seq), got " + shape_text(input_ids));
  require(input_ids.size(0) > 0 && input_ids.size(1) > 0,
          "input_ids is empty: shape " + shape_text(input_ids));
  check_id_range(input_ids, config_.vocab_size, "input_ids", "vocab_size");
  if (token_type_ids.defined()) {
    require(is_integer_dtype(token_type_ids),
            "token_type_ids must be an int32 or int64 tensor, got " + dtype_string(token_type_ids));
    require(token_type_ids.sizes() == input_ids.sizes(), "token_type_ids has shape " + shape_text(token_type_ids) +
                                                             " but input_ids has shape " + shape_text(input_ids));
    check_id_range(token_type_ids, config_.type_vocab_size, "token_type_ids", "type_vocab_size");
  }
  // The mask is read where it arrived (the host, from JS): whether any row is padded or
  // packed decides the attention layout without a device round trip.
  const auto mask = attention_mask.defined() ? attention_mask : input_ids.ne(config_.pad_token_id);
  require(mask.sizes() == input_ids.sizes(),
          "attention_mask has shape " + shape_text(mask) + " but input_ids has shape " + shape_text(input_ids));
  const auto numbers = mask.to(torch::kLong);
  if (numbers.gt(1).any().item<bool>()) {
    require(numbers.min().item<int64_t>() >= 0, "attention_mask numbers packed documents from 1 (0 = padding); "
                                                "it holds a negative value");
    return MaskLayout::packed;
  }
  return mask.eq(0).any().item<bool>() ? MaskLayout::padding : MaskLayout::none;
}

void EncoderModel::prepare_inputs(torch::Tensor& input_ids, torch::Tensor& token_type_ids,
                                  torch::Tensor& attention_mask, torch::Device device, torch::Tensor* positions) const {
  // Under a CUDA graph capture the inputs are the graph step's device buffers, checked on the
  // host before they were copied in, and the layout is stated (graph_capture.h).
  const auto stated = graph_capture::stated_mask_layout();
  const MaskLayout layout = stated ? *stated : check_inputs(input_ids, token_type_ids, attention_mask);
  auto mask = attention_mask.defined() ? attention_mask : input_ids.ne(config_.pad_token_id);
  input_ids = input_ids.to(device, torch::kLong);
  token_type_ids = token_type_ids.defined() ? token_type_ids.to(device, torch::kLong) : torch::zeros_like(input_ids);
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1);
  switch (layout) {
    case MaskLayout::packed: {
      auto documents = mask.to(device, torch::kLong);
      attention_mask = document_keep_mask(documents);
      if (positions) *positions = document_positions(documents);
      break;
    }
    case MaskLayout::padding:
      attention_mask = key_padding_mask(mask.to(device)).view({batch, 1, 1, seq});
      break;
    case MaskLayout::none:
      attention_mask = torch::Tensor();  // no padding: attention without a mask
      break;
  }
}

torch::Tensor EncoderModel::prepare_positions(const torch::Tensor& positions, int64_t rows) const {
  if (!positions.defined()) return positions;
  require(is_integer_dtype(positions), "positions must be an int32 or int64 tensor, got " + dtype_string(positions));
  require(positions.dim() == 1, "positions must be 1-D (flat indices into batch*seq), got " + shape_text(positions));
  // The graph step checked its target positions on the host before copying them in.
  if (!graph_capture::stated_mask_layout()) check_id_range(positions, rows, "positions", "batch*seq");
  return positions.to(torch::kLong);
}

torch::Tensor EncoderModel::tied_mlm_logits(const torch::Tensor& hidden, torch::Tensor positions,
                                             const torch::Tensor& word_embeddings) const {
  require(hidden.dim() >= 2 && hidden.size(-1) == config_.hidden_size,
          "hidden must have shape (..., " + std::to_string(config_.hidden_size) + "), got " + shape_text(hidden));
  auto rows = hidden.reshape({-1, config_.hidden_size});
  positions = prepare_positions(positions, rows.size(0));
  if (positions.defined()) rows = rows.index_select(0, positions.to(rows.device()));
  return compute::linear(rows, word_embeddings);
}

// ---------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------

RotaryEmbeddingImpl::RotaryEmbeddingImpl(int64_t head_dim, double base, double interpolation_factor)
    : head_dim(head_dim), base(base), interpolation_factor(interpolation_factor) {
  require(head_dim > 0 && head_dim % 2 == 0, "RotaryEmbedding: head_dim must be a positive even number, got " +
                                                 std::to_string(head_dim));
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbeddingImpl::forward(int64_t seq_len, torch::Device device,
                                                                     torch::ScalarType dtype) const {
  const auto table_dtype = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
  const auto options = torch::TensorOptions().dtype(table_dtype).device(device);
  // θ_i = base^(-2i/d), i = 0 .. d/2-1
  auto theta = torch::pow(base, -torch::arange(0, head_dim, 2, options) / static_cast<double>(head_dim));
  auto positions = torch::arange(seq_len, options) * interpolation_factor;
  // (seq, d/2) angles, each repeated for the two members of its pair → (seq, d)
  auto angles = torch::outer(positions, theta).repeat_interleave(2, /*dim=*/-1);
  return {angles.cos(), angles.sin()};
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbeddingImpl::at_positions(const torch::Tensor& positions,
                                                                     torch::ScalarType dtype) const {
  const auto table_dtype = dtype == torch::kDouble ? torch::kDouble : torch::kFloat;
  const auto options = torch::TensorOptions().dtype(table_dtype).device(positions.device());
  auto theta = torch::pow(base, -torch::arange(0, head_dim, 2, options) / static_cast<double>(head_dim));
  // (batch, seq, d/2) angles, as the table above but at each token's own position
  auto angles = ((positions.to(table_dtype) * interpolation_factor).unsqueeze(-1) * theta).repeat_interleave(2, -1);
  return {angles.cos(), angles.sin()};
}

namespace {

// (a, b) → (b, a) for every adjacent pair of the last dimension.
torch::Tensor swap_pairs(const torch::Tensor& x) { return x.unflatten(-1, {-1, 2}).flip(-1).flatten(-2); }

// RoPE with a hand-written backward. Autograd through the plain expression keeps
// every intermediate and runs ~6 elementwise passes each way; here each direction
// is three: y = x·cos + swap(x)·sin±, and dx = dy·cos − swap(dy)·sin±, where sin±
// carries the sign of the rotation (−sin on even, +sin on odd elements).
class RotaryFunction : public torch::autograd::Function<RotaryFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& signed_sin) {
    ctx->save_for_backward({cos, signed_sin});
    return torch::addcmul(x * cos, swap_pairs(x), signed_sin);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto& dy = grad_outputs[0];
    return {torch::addcmul(dy * saved[0], swap_pairs(dy), saved[1], -1), torch::Tensor(), torch::Tensor()};
  }
};

// y = x · r, r = 1/sqrt(mean(x²) + eps), with a hand-written backward:
// dx = r · (dy − y · mean(dy · y)). Two passes over x forward and four backward,
// where autograd through pow/mean/rsqrt/mul needs more and keeps more.
class RMSNormFunction : public torch::autograd::Function<RMSNormFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, double eps) {
    // Reduced-precision inputs are normalised in float32: mean(x²) loses too much in fp16/bf16.
    const bool low_precision = x.scalar_type() == torch::kHalf || x.scalar_type() == torch::kBFloat16;
    auto xf = low_precision ? x.to(torch::kFloat) : x;
    const double d = static_cast<double>(x.size(-1));
    auto norm = at::linalg_vector_norm(xf, 2, {-1}, /*keepdim=*/true);  // one fused pass
    auto r = torch::rsqrt(norm.square().div_(d).add_(eps));
    auto y = xf * r;
    ctx->save_for_backward({y, r});
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    return low_precision ? y.to(x.scalar_type()) : y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto& y = saved[0];
    const auto& r = saved[1];
    auto dy = grad_outputs[0].to(y.scalar_type());
    auto mean_dy_y = (dy * y).mean(-1, /*keepdim=*/true);
    auto dx = torch::addcmul(dy, y, mean_dy_y, -1).mul_(r);
    const auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {dx.to(dtype), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  // sin± = (−sin, +sin, −sin, +sin, ...): the sign of each element's partner in the rotation.
  // (−1, +1) made on the device (2·arange(2) − 1), not copied from a host literal: a CUDA graph
  // capture refuses copies from pageable host memory.
  auto sign = torch::arange(2, sin.options()).mul_(2).sub_(1);
  auto signed_sin = (sin.unflatten(-1, {-1, 2}) * sign).flatten(-2);
  return RotaryFunction::apply(x, cos.to(x.scalar_type()), signed_sin.to(x.scalar_type()));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) const { return RMSNormFunction::apply(x, eps); }

SelfAttentionImpl::SelfAttentionImpl(int64_t hidden_size, int64_t num_heads, double dropout, bool bias,
                                     AttentionNormalization normalization)
    : num_heads(num_heads), dropout(dropout), normalization(normalization) {
  // Registered first, as query, key and value were: the initialisers draw the same numbers
  // in the same order (the packed rows are q's, k's, v's; fan_in is hidden_size as before).
  qkv = register_module("qkv",
                        torch::nn::Linear(torch::nn::LinearOptions(hidden_size, 3 * hidden_size).bias(bias)));
  output = register_module("output",
                           torch::nn::Linear(torch::nn::LinearOptions(hidden_size, hidden_size).bias(bias)));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& keep, const torch::Tensor& cos,
                                         const torch::Tensor& sin) {
  return attend(compute::linear(x, qkv), keep, cos, sin);
}

compute::LinearAndInput SelfAttentionImpl::forward_passing_input(const torch::Tensor& x, const torch::Tensor& keep,
                                                                 const torch::Tensor& cos, const torch::Tensor& sin) {
  auto [projected, x_on] = compute::linear_passing_input(x, qkv);
  return {attend(projected, keep, cos, sin), x_on};
}

torch::Tensor SelfAttentionImpl::attend(const torch::Tensor& projected, const torch::Tensor& keep,
                                        const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t batch = projected.size(0), seq = projected.size(1), hidden = projected.size(2) / 3;
  // One product for all three: (batch, seq, 3·hidden) → q, k, v views of (batch, seq,
  // heads, head_dim), rows of head_dim contiguous and tokens evenly spaced (3·hidden apart).
  auto packed = projected.view({batch, seq, 3, num_heads, -1}).unbind(2);
  auto q = packed[0], k = packed[1], v = packed[2];
  if (cos.defined()) {
    // Rotate in this (batch, seq, heads, head_dim) layout (tables broadcast over heads):
    // elementwise work on the transposed view below would be more strided and slower.
    if (fused::use_rotary_qk(q, k, cos)) {
      std::tie(q, k) = fused::rotary_qk(q, k, cos, sin);  // both in one kernel (native/kernels/)
    } else {
      auto c = cos.unsqueeze(-2), s = sin.unsqueeze(-2);
      q = apply_rotary(q, c, s);
      k = apply_rotary(k, c, s);
    }
  }
  // → (batch, heads, seq, head_dim) views for attention
  auto attended = normalized_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), keep, normalization,
                                       is_training() ? dropout : 0.0);
  return compute::linear(attended.transpose(1, 2).reshape({batch, seq, hidden}), output);
}

EncoderBlockImpl::EncoderBlockImpl(const ModelConfig& config) {
  attention = register_module(
      "attention", SelfAttention(config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob,
                                 /*bias=*/false, config.normalization));
  pre_norm = config.pre_norm;
  intermediate = register_module(
      "intermediate",
      torch::nn::Linear(torch::nn::LinearOptions(config.hidden_size, config.intermediate_size).bias(false)));
  output = register_module(
      "output", torch::nn::Linear(torch::nn::LinearOptions(config.intermediate_size, config.hidden_size).bias(false)));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  norm = register_module("norm", RMSNorm(config.layer_norm_eps));
}

torch::Tensor EncoderBlockImpl::forward(torch::Tensor x, const torch::Tensor& keep, const torch::Tensor& cos,
                                        const torch::Tensor& sin) {
  // ReLU in place: its backward needs only its output, so the pre-activation need not be kept
  // (one (batch, seq, intermediate) tensor less per layer, one pass less).
  auto feed_forward = [this](const torch::Tensor& h) {
    return compute::linear(fused::relu_(compute::linear(h, intermediate)), output);
  };
  if (pre_norm) {
    const double p = is_training() ? dropout->options.p() : 0.0;
    x = x + alpha * fused::dropout(attention(norm(x), keep, cos, sin), p);
    return x + alpha * fused::dropout(feed_forward(norm(x)), p);
  }
  // Each sublayer's first product also passes x on to the residual, so that its backward sums
  // x's two gradients in the product itself (compute::linear_passing_input).
  auto [attended, x_on] = attention->forward_passing_input(x, keep, cos, sin);
  x = add_and_norm(x_on, attended);
  auto [hidden, x_on_ffn] = compute::linear_passing_input(x, intermediate);
  return add_and_norm(x_on_ffn, compute::linear(fused::relu_(hidden), output));
}

// norm(x + α·dropout(branch)): one kernel each way where the fused path applies (native/kernels/).
torch::Tensor EncoderBlockImpl::add_and_norm(const torch::Tensor& x, const torch::Tensor& branch) {
  if (fused::use_residual_rms_norm(x, branch)) {
    return fused::residual_rms_norm(x, branch, alpha, is_training() ? dropout->options.p() : 0.0, norm->eps);
  }
  return norm(x + alpha * fused::dropout(branch, is_training() ? dropout->options.p() : 0.0));
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

RoFormerV2::RoFormerV2(const ModelConfig& config) : EncoderModel(config) {
  config.validate(/*needs_even_head_dim=*/true);
  word_embeddings = register_module("word_embeddings", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", torch::nn::Embedding(config.type_vocab_size, config.hidden_size));
  dropout = register_module("dropout", torch::nn::Dropout(config.hidden_dropout_prob));
  norm = register_module("norm", RMSNorm(config.layer_norm_eps));
  rotary = register_module("rotary",
                           RotaryEmbedding(config.head_dim(), config.rope_theta, config.rope_interpolation_factor));
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layer->push_back(EncoderBlock(config));
  reset_parameters();
}

void truncated_normal_(torch::Tensor weight, double std) {
  torch::NoGradGuard no_grad;
  // Sample u uniformly between Φ(−2) and Φ(2) (written as 2Φ−1 = erf(x/√2)), map back
  // through erfinv: exactly a normal truncated to ±2σ.
  const double bound = std::erf(2.0 / std::sqrt(2.0));
  weight.uniform_(-bound, bound).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(-2.0 * std, 2.0 * std);
}

void RoFormerV2::reset_parameters() {
  // σ = 1.13684723 / sqrt(fan_in) · L^(-1/2); 1.13684723 undoes the variance the
  // truncation removes. Every weight here is (out, in) or (vocab, hidden): fan_in = size(1).
  const double depth_scale = 1.0 / std::sqrt(static_cast<double>(config_.num_hidden_layers));
  for (auto& parameter : parameters()) {
    const double fan_in = static_cast<double>(parameter.size(1));
    truncated_normal_(parameter, 1.13684723 / std::sqrt(fan_in) * depth_scale);
  }
}

void RoFormerV2::set_residual_scale(double alpha) {
  alpha_ = alpha;
  for (auto& block : *layer) block->as<EncoderBlockImpl>()->alpha = alpha;
}

torch::Tensor RoFormerV2::forward(torch::Tensor input_ids, torch::Tensor token_type_ids,
                                  torch::Tensor attention_mask) {
  torch::Tensor positions;  // packed rows: positions within each document
  prepare_inputs(input_ids, token_type_ids, attention_mask, word_embeddings->weight.device(), &positions);
  const int64_t seq = input_ids.size(1);

  // norm(dropout(E_tok[ids] + E_seg[types])): one kernel each way where the fused path applies.
  // Under autocast the fused path writes the residual stream in the compute dtype (bf16/fp16),
  // and every block's fused residual norm keeps it there: the matrix products then read it
  // without a cast each, their gradients come back without one, and the norms move half the
  // bytes. Post-norm renormalises it in every block, in fp32 math, so nothing accumulates in the
  // narrow type. (libtorch's chain, where the fused path does not apply, keeps it in fp32.)
  torch::Tensor x;
  const auto stream_dtype = compat::autocast_dtype(word_embeddings->weight.device());
  if (fused::use_embedding_rms_norm(word_embeddings->weight, token_type_embeddings->weight, stream_dtype)) {
    x = fused::embedding_rms_norm(input_ids, token_type_ids, word_embeddings->weight, token_type_embeddings->weight,
                                  is_training() ? dropout->options.p() : 0.0, norm->eps, std::nullopt, stream_dtype);
  } else {
    x = norm(fused::dropout(compute::embedding(word_embeddings->weight, input_ids) +
                                compute::embedding(token_type_embeddings->weight, token_type_ids),
                            is_training() ? dropout->options.p() : 0.0));
  }

  // One set of rotary tables and one key mask, shared by every block: (seq, d) tables
  // for rows of one document, (batch, seq, d) for packed rows.
  auto [cos, sin] = positions.defined() ? rotary->at_positions(positions, x.scalar_type())
                                        : rotary(seq, x.device(), x.scalar_type());
  const auto& keep = attention_mask;
  for (auto& block : *layer) x = block->as<EncoderBlockImpl>()->forward(x, keep, cos, sin);
  // Pre-norm blocks leave the residual stream unnormalised: the MLM head and the task heads expect it normalised.
  return config_.pre_norm ? norm(x) : x;
}

torch::Tensor RoFormerV2::mlm_logits(const torch::Tensor& hidden, torch::Tensor positions) {
  return tied_mlm_logits(hidden, std::move(positions), word_embeddings->weight);
}

}  // namespace roformer
