#include "module_handle.h"

#include "baseline.h"
#include "compat.h"
#include "executor.h"
#include "gau_alpha.h"
#include "modules.h"
#include "packed_qkv.h"
#include "tensor_handle.h"

#include <algorithm>
#include <map>

namespace roformer::js {

namespace {

// Module construction draws from libtorch's global generator: one at a time, so a
// seed always gives the same weights.
std::mutex creation_mutex;

// Holds the creation lock, with libtorch's generator seeded from `seed` (the third
// argument of createModel / createLayer) when one is given.
std::unique_lock<std::mutex> seeded_creation(const Napi::CallbackInfo& info) {
  std::unique_lock<std::mutex> lock(creation_mutex);
  if (info.Length() > 2 && info[2].IsNumber()) torch::manual_seed(info[2].As<Napi::Number>().Int64Value());
  return lock;
}

// Reads the Hugging Face config.json keys the native code needs; the TypeScript
// layer has already checked the string-valued keys (hidden_act, norm_type, ...).
ModelConfig parse_config(const Napi::Object& js) {
  ModelConfig c;
  const std::string where = "config.";
  c.vocab_size = integer_field(js, "vocab_size", c.vocab_size, where);
  c.hidden_size = integer_field(js, "hidden_size", c.hidden_size, where);
  c.num_hidden_layers = integer_field(js, "num_hidden_layers", c.num_hidden_layers, where);
  c.num_attention_heads = integer_field(js, "num_attention_heads", c.num_attention_heads, where);
  c.intermediate_size = integer_field(js, "intermediate_size", c.intermediate_size, where);
  c.type_vocab_size = integer_field(js, "type_vocab_size", c.type_vocab_size, where);
  c.max_position_embeddings = integer_field(js, "max_position_embeddings", c.max_position_embeddings, where);
  c.pad_token_id = integer_field(js, "pad_token_id", c.pad_token_id, where);
  c.hidden_dropout_prob = number_field(js, "hidden_dropout_prob", c.hidden_dropout_prob, where);
  c.attention_probs_dropout_prob =
      number_field(js, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, where);
  c.layer_norm_eps = number_field(js, "layer_norm_eps", c.layer_norm_eps, where);
  c.rope_theta = number_field(js, "rope_theta", c.rope_theta, where);
  c.rope_interpolation_factor = number_field(js, "rope_interpolation_factor", c.rope_interpolation_factor, where);
  c.normalization = parse_attention_normalization(
      string_field(js, "normalization", attention_normalization_name(c.normalization), where));
  const auto norm_position = string_field(js, "norm_position", "post", where);
  require(norm_position == "post" || norm_position == "pre",
          "config: norm_position must be 'post' or 'pre', got '" + norm_position + "'");
  c.pre_norm = norm_position == "pre";
  c.attention_key_size = integer_field(js, "attention_key_size", c.attention_key_size, where);
  c.attention_scale = boolean_field(js, "attention_scale", c.attention_scale);
  c.use_bias = boolean_field(js, "use_bias", c.use_bias);
  c.initializer_range = number_field(js, "initializer_range", c.initializer_range, where);
  return c;
}

Napi::Object config_to_js(Napi::Env env, const ModelConfig& c, const std::string& architecture) {
  auto js = Napi::Object::New(env);
  js.Set("architecture", architecture);
  js.Set("vocab_size", static_cast<double>(c.vocab_size));
  js.Set("hidden_size", static_cast<double>(c.hidden_size));
  js.Set("num_hidden_layers", static_cast<double>(c.num_hidden_layers));
  js.Set("num_attention_heads", static_cast<double>(c.num_attention_heads));
  js.Set("intermediate_size", static_cast<double>(c.intermediate_size));
  js.Set("type_vocab_size", static_cast<double>(c.type_vocab_size));
  js.Set("max_position_embeddings", static_cast<double>(c.max_position_embeddings));
  js.Set("pad_token_id", static_cast<double>(c.pad_token_id));
  js.Set("hidden_dropout_prob", c.hidden_dropout_prob);
  js.Set("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  js.Set("layer_norm_eps", c.layer_norm_eps);
  js.Set("rope_theta", c.rope_theta);
  js.Set("rope_interpolation_factor", c.rope_interpolation_factor);
  js.Set("normalization", attention_normalization_name(c.normalization));
  js.Set("norm_position", c.pre_norm ? "pre" : "post");
  js.Set("attention_key_size", static_cast<double>(c.attention_key_size));
  js.Set("attention_scale", c.attention_scale);
  js.Set("use_bias", c.use_bias);
  js.Set("initializer_range", c.initializer_range);
  return js;
}

std::vector<torch::Tensor> tensor_list(const Napi::Value& value, const char* what) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), std::string(what) + " must be an array of Tensors");
  auto array = value.As<Napi::Array>();
  std::vector<torch::Tensor> tensors;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    tensors.push_back(TensorHandle::unwrap(array.Get(i), std::string(what) + "[" + std::to_string(i) + "]",
                                           /*optional=*/true));
  }
  return tensors;
}

const torch::Tensor& required_input(const std::vector<torch::Tensor>& inputs, size_t i, const char* name) {
  if (inputs.size() <= i || !inputs[i].defined()) throw std::invalid_argument(std::string(name) + " is required");
  return inputs[i];
}

// A (batch, seq) padding mask (non-zero = real token) as the (batch, 1, 1, seq) keep mask attention takes.
torch::Tensor keep_mask(const std::vector<torch::Tensor>& inputs, size_t i, const torch::Tensor& x) {
  if (inputs.size() <= i || !inputs[i].defined()) return {};
  const auto& mask = inputs[i];
  if (mask.dim() != 2 || mask.size(0) != x.size(0) || mask.size(1) != x.size(1)) {
    throw std::invalid_argument("attention_mask must have shape (batch, seq) = [" + std::to_string(x.size(0)) + ", " +
                                std::to_string(x.size(1)) + "], got " + shape_text(mask));
  }
  return key_padding_mask(mask.to(x.device())).view({x.size(0), 1, 1, x.size(1)});
}

void require_hidden(const torch::Tensor& x, int64_t hidden) {
  if (x.dim() != 3 || x.size(2) != hidden || !x.is_floating_point()) {
    throw std::invalid_argument("x must be a floating-point tensor of shape (batch, seq, " + std::to_string(hidden) +
                                "), got " + dtype_name(x.scalar_type()) + " " + shape_text(x));
  }
}

}  // namespace

Napi::Function ModuleHandle::define_class(Napi::Env env) {
  return DefineClass(env, "NativeModule",
                     {
                         InstanceAccessor<&ModuleHandle::kind>("kind"),
                         InstanceAccessor<&ModuleHandle::training>("training"),
                         InstanceAccessor<&ModuleHandle::parameter_count>("parameterCount"),
                         InstanceAccessor<&ModuleHandle::residual_scale>("residualScale"),
                         InstanceMethod<&ModuleHandle::config>("config"),
                         InstanceMethod<&ModuleHandle::set_residual_scale>("setResidualScale"),
                         InstanceMethod<&ModuleHandle::train>("train"),
                         InstanceMethod<&ModuleHandle::to>("to"),
                         InstanceMethod<&ModuleHandle::named_parameters>("namedParameters"),
                         InstanceMethod<&ModuleHandle::load_state_dict>("loadStateDict"),
                         InstanceMethod<&ModuleHandle::forward>("forward"),
                         InstanceMethod<&ModuleHandle::mlm_logits>("mlmLogits"),
                         InstanceMethod<&ModuleHandle::call>("call"),
                         InstanceMethod<&ModuleHandle::vjp>("vjp"),
                         InstanceMethod<&ModuleHandle::idle>("idle"),
                         InstanceMethod<&ModuleHandle::dispose>("dispose"),
                         InstanceAccessor<&ModuleHandle::disposed>("disposed"),
                     });
}

ModuleHandle::ModuleHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModuleHandle>(info) {}

Napi::Object ModuleHandle::wrap(Napi::Env env, std::string kind, std::shared_ptr<torch::nn::Module> module,
                                std::shared_ptr<EncoderModel> model, LayerCall call) {
  auto object = addon_data(env).module_constructor.New({});
  auto* handle = Unwrap(object);
  handle->kind_ = std::move(kind);
  handle->module_ = std::move(module);
  handle->model_ = std::move(model);
  handle->call_ = std::move(call);
  return object;
}

std::pair<std::shared_ptr<EncoderModel>, std::shared_ptr<std::mutex>> ModuleHandle::unwrap_model(
    const Napi::Value& value, const std::string& what) {
  auto env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).module_constructor.Value())) {
    throw Napi::TypeError::New(env, what + " must be a native model");
  }
  auto* handle = Unwrap(value.As<Napi::Object>());
  if (handle->disposed_) throw Napi::Error::New(env, what + " was disposed and can no longer be used");
  if (!handle->model_) throw Napi::TypeError::New(env, what + " is a " + handle->kind_ + " layer, not a whole model");
  return {handle->model_, handle->mutex_};
}

std::shared_ptr<ModelUse> ModuleHandle::use_of(const Napi::Value& value) {
  return Unwrap(value.As<Napi::Object>())->use_;
}

void ModuleHandle::check_usable(const char* method, bool refuse_while_busy) const {
  if (disposed_) {
    throw std::invalid_argument(std::string(method) + ": this model was disposed and can no longer be used");
  }
  if (refuse_while_busy && use_->busy()) {
    throw std::invalid_argument(std::string(method) +
                                ": a training step or forward pass that uses this model is still running; "
                                "await it first (or await model.idle())");
  }
}

EncoderModel& ModuleHandle::model(const char* method) const {
  check_usable(method);
  if (!model_) throw std::invalid_argument(std::string(method) + " is only available on whole models, not on a " + kind_);
  return *model_;
}

// ---------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------

Napi::Value ModuleHandle::create_model(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsString()) {
      throw_type_error(env, "createModel(architecture: string, config: object, seed?: number)");
    }
    const auto architecture = info[0].As<Napi::String>().Utf8Value();
    const auto config = parse_config(require_object(info[1], "config"));
    auto creation = seeded_creation(info);
    std::shared_ptr<EncoderModel> model;
    if (architecture == "roformer-v2") {
      model = std::make_shared<RoFormerV2>(config);
    } else if (architecture == "gau-alpha") {
      model = std::make_shared<GauAlpha>(config);
    } else if (architecture == "roberta-baseline") {
      model = std::make_shared<RobertaBaseline>(config);
    } else {
      throw std::invalid_argument("unknown architecture '" + architecture +
                                  "': use 'roformer-v2', 'gau-alpha' or 'roberta-baseline'");
    }
    return wrap(env, architecture, model, model, nullptr);
  });
}

Napi::Value ModuleHandle::create_layer(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsString()) {
      throw_type_error(env, "createLayer(kind: string, options: object, seed?: number)");
    }
    const auto kind = info[0].As<Napi::String>().Utf8Value();
    const auto options = require_object(info[1], "options");
    auto creation = seeded_creation(info);

    if (kind == "rotary") {
      RotaryEmbedding rotary(integer_field(options, "head_dim", 0, "options."),
                             number_field(options, "base", 10000.0, "options."),
                             number_field(options, "interpolation_factor", 1.0, "options."));
      // call([x]): x (..., seq, head_dim) rotated position by position along dim -2.
      return wrap(env, kind, rotary.ptr(), nullptr, [rotary](const std::vector<torch::Tensor>& in) mutable {
        const auto& x = required_input(in, 0, "x");
        if (x.dim() < 2 || x.size(-1) != rotary->head_dim || !x.is_floating_point()) {
          throw std::invalid_argument("x must be a floating-point tensor of shape (..., seq, " +
                                      std::to_string(rotary->head_dim) + "), got " + shape_text(x));
        }
        auto [cos, sin] = rotary(x.size(-2), x.device(), x.scalar_type());
        return apply_rotary(x, cos, sin);
      });
    }
    if (kind == "rms_norm") {
      RMSNorm norm(number_field(options, "eps", 1e-12, "options."));
      return wrap(env, kind, norm.ptr(), nullptr, [norm](const std::vector<torch::Tensor>& in) mutable {
        const auto& x = required_input(in, 0, "x");
        if (!x.is_floating_point()) throw std::invalid_argument("x must be a floating-point tensor");
        return norm(x);
      });
    }
    if (kind == "self_attention") {
      const auto config = parse_config(options);
      config.validate(/*needs_even_head_dim=*/true);
      const bool rotary_on = boolean_field(options, "rotary", true);
      SelfAttention attention(config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob,
                              boolean_field(options, "bias", false), config.normalization);
      RotaryEmbedding rotary(config.head_dim(), config.rope_theta, config.rope_interpolation_factor);
      // call([x, attention_mask?])
      return wrap(env, kind, attention.ptr(), nullptr,
                  [attention, rotary, rotary_on, config](const std::vector<torch::Tensor>& in) mutable {
                    const auto& x = required_input(in, 0, "x");
                    require_hidden(x, config.hidden_size);
                    torch::Tensor cos, sin;
                    if (rotary_on) std::tie(cos, sin) = rotary(x.size(1), x.device(), x.scalar_type());
                    return attention->forward(x, keep_mask(in, 1, x), cos, sin);
                  });
    }
    if (kind == "encoder_block") {
      const auto config = parse_config(options);
      config.validate(/*needs_even_head_dim=*/true);
      EncoderBlock block(config);
      block->alpha = number_field(options, "alpha", 1.0, "options.");
      RotaryEmbedding rotary(config.head_dim(), config.rope_theta, config.rope_interpolation_factor);
      // call([x, attention_mask?])
      return wrap(env, kind, block.ptr(), nullptr, [block, rotary, config](const std::vector<torch::Tensor>& in) mutable {
        const auto& x = required_input(in, 0, "x");
        require_hidden(x, config.hidden_size);
        auto [cos, sin] = rotary(x.size(1), x.device(), x.scalar_type());
        return block->forward(x, keep_mask(in, 1, x), cos, sin);
      });
    }
    if (kind == "normalized_attention") {
      const auto normalization = parse_attention_normalization(string_field(options, "normalization", "softmax", "options."));
      const bool scaled = boolean_field(options, "scaled", true);
      // call([q, k, v, attention_mask?]): q, k (batch, heads, seq, d), v (batch, heads, seq, dv); no parameters.
      auto holder = std::make_shared<torch::nn::Module>();
      return wrap(env, kind, holder, nullptr, [normalization, scaled](const std::vector<torch::Tensor>& in) {
        const auto& q = required_input(in, 0, "q");
        const auto& k = required_input(in, 1, "k");
        const auto& v = required_input(in, 2, "v");
        if (q.dim() != 4 || k.sizes() != q.sizes() || v.dim() != 4 || v.size(2) != q.size(2)) {
          throw std::invalid_argument("q and k must have the same shape (batch, heads, seq, d) and v (batch, heads, seq, dv); got " +
                                      shape_text(q) + ", " + shape_text(k) + ", " + shape_text(v));
        }
        torch::Tensor keep;
        if (in.size() > 3 && in[3].defined()) keep = key_padding_mask(in[3]).view({q.size(0), 1, 1, q.size(2)});
        return normalized_attention(q, k, v, keep, normalization, 0.0, scaled);
      });
    }
    if (kind == "gated_attention_unit" || kind == "gau_layer") {
      const auto config = parse_config(options);
      validate_gau_alpha_config(config);
      RotaryEmbedding rotary(config.attention_key_size, config.rope_theta, config.rope_interpolation_factor);
      std::shared_ptr<torch::nn::Module> module;
      std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)> run;
      if (kind == "gau_layer") {
        GauLayer unit(config);
        module = unit.ptr();
        run = [unit](auto&&... args) mutable { return unit->forward(args...); };
      } else {
        GatedAttentionUnit unit(config);
        module = unit.ptr();
        run = [unit](auto&&... args) mutable { return unit->forward(args...).y; };
      }
      // call([x, attention_mask?])
      return wrap(env, kind, module, nullptr, [run, rotary, config](const std::vector<torch::Tensor>& in) mutable {
        const auto& x = required_input(in, 0, "x");
        require_hidden(x, config.hidden_size);
        auto [cos, sin] = rotary(x.size(1), x.device(), x.scalar_type());
        return run(x, keep_mask(in, 1, x), cos, sin);
      });
    }
    throw std::invalid_argument("unknown layer kind '" + kind +
                                "': use 'rotary', 'rms_norm', 'self_attention', 'encoder_block', "
                                "'normalized_attention', 'gated_attention_unit' or 'gau_layer'");
  });
}

// ---------------------------------------------------------------------------
// Properties and state
// ---------------------------------------------------------------------------

Napi::Value ModuleHandle::kind(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kind_); }

Napi::Value ModuleHandle::disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

Napi::Value ModuleHandle::config(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return config_to_js(info.Env(), model("config").config(), kind_);
  });
}

Napi::Value ModuleHandle::training(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    check_usable("training");
    if (use_->busy() && use_->queued_training) return Napi::Boolean::New(info.Env(), *use_->queued_training);
    return Napi::Boolean::New(info.Env(), module_->is_training());
  });
}

Napi::Value ModuleHandle::parameter_count(const Napi::CallbackInfo& info) {
  if (disposed_) return Napi::Number::New(info.Env(), 0);
  int64_t count = 0;
  for (const auto& p : module_->parameters()) count += p.numel();
  return Napi::Number::New(info.Env(), static_cast<double>(count));
}

Napi::Value ModuleHandle::residual_scale(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), model("residualScale").residual_scale());
  });
}

Napi::Value ModuleHandle::set_residual_scale(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw_type_error(env, "setResidualScale(alpha: number)");
    const double alpha = info[0].As<Napi::Number>().DoubleValue();
    if (!(alpha >= 0.0 && alpha <= 1.0)) throw std::invalid_argument("residual scale α must be in [0, 1]");
    check_usable("setResidualScale", /*refuse_while_busy=*/true);
    std::lock_guard<std::mutex> lock(*mutex_);
    model("setResidualScale").set_residual_scale(alpha);
    return env.Undefined();
  });
}

Napi::Value ModuleHandle::train(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const bool on = info.Length() < 1 || info[0].ToBoolean().Value();
    check_usable(on ? "train" : "eval");
    if (use_->busy()) {
      // Queued behind the running jobs (the executor keeps order): the event loop
      // never waits, and the mode never changes in the middle of a forward pass.
      use_->queued_training = on;
      Executor::instance().submit([module = module_, on]() { module->train(on); });
      return env.Undefined();
    }
    std::lock_guard<std::mutex> lock(*mutex_);
    module_->train(on);
    return env.Undefined();
  });
}

Napi::Value ModuleHandle::to(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw_type_error(env, "to(device: string, dtype?: string)");
    const auto device = parse_device(info[0].As<Napi::String>().Utf8Value());
    check_usable("to", /*refuse_while_busy=*/true);
    std::lock_guard<std::mutex> lock(*mutex_);
    if (info.Length() > 1 && info[1].IsString()) {
      const auto dtype = parse_dtype(info[1].As<Napi::String>().Utf8Value());
      if (!c10::isFloatingType(dtype)) throw std::invalid_argument("a module's dtype must be floating point");
      module_->to(device, dtype);
    } else {
      module_->to(device);
    }
    return env.Undefined();
  });
}

Napi::Value ModuleHandle::named_parameters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    check_usable("namedParameters", /*refuse_while_busy=*/true);
    std::lock_guard<std::mutex> lock(*mutex_);
    auto result = Napi::Object::New(env);
    // Detached views of the live weights (no copy), q, k and v apart; Tensor.to() takes a snapshot.
    for (const auto& [name, tensor] : public_parameters(*module_)) result.Set(name, TensorHandle::wrap(env, tensor.detach()));
    return result;
  });
}

Napi::Value ModuleHandle::load_state_dict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto given = require_object(info.Length() > 0 ? info[0] : env.Undefined(), "loadStateDict(state)");
    check_usable("loadStateDict", /*refuse_while_busy=*/true);
    std::lock_guard<std::mutex> lock(*mutex_);
    // By the names outside code uses: q, k and v are views into the packed projection.
    std::map<std::string, torch::Tensor> params;
    const auto named = public_parameters(*module_);
    for (const auto& [name, tensor] : named) params[name] = tensor;

    // Strict: every problem is collected and named, and nothing is copied unless all is well.
    std::vector<std::string> problems;
    std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
    auto keys = given.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const auto name = keys.Get(i).ToString().Utf8Value();
      if (!params.count(name)) {
        problems.push_back("unexpected tensor " + name);
        continue;
      }
      auto source = TensorHandle::unwrap(given.Get(name), "state['" + name + "']");
      auto& target = params[name];
      if (source.sizes() != target.sizes()) {
        problems.push_back("tensor " + name + " has shape " + shape_text(source) + " but the model expects " +
                           shape_text(target));
      } else if (!source.is_floating_point()) {
        problems.push_back("tensor " + name + " has dtype " + dtype_name(source.scalar_type()) +
                           " but the model expects floating point");
      } else {
        copies.emplace_back(target, source);
      }
    }
    for (const auto& [name, tensor] : named) {
      if (!given.Has(name)) problems.push_back("missing tensor " + name);
    }
    if (!problems.empty()) {
      std::string message = "loadStateDict: " + std::to_string(problems.size()) + " problem(s):";
      for (const auto& p : problems) message += "\n  - " + p;
      throw std::invalid_argument(message);
    }
    torch::NoGradGuard no_grad;
    for (auto& [target, source] : copies) target.copy_(source);
    return env.Undefined();
  });
}

// ---------------------------------------------------------------------------
// Computation
// ---------------------------------------------------------------------------

Napi::Value ModuleHandle::forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    model("forward");
    auto ids = TensorHandle::unwrap(info[0], "input_ids");
    auto token_types = TensorHandle::unwrap(info[1], "token_type_ids", /*optional=*/true);
    auto mask = TensorHandle::unwrap(info[2], "attention_mask", /*optional=*/true);
    return start_inference(env, [=](EncoderModel& model) { return model.forward(ids, token_types, mask); });
  });
}

Napi::Value ModuleHandle::mlm_logits(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    model("mlmLogits");
    auto hidden = TensorHandle::unwrap(info[0], "hidden");
    auto positions = TensorHandle::unwrap(info[1], "positions", /*optional=*/true);
    return start_inference(env, [=](EncoderModel& model) { return model.mlm_logits(hidden, positions); });
  });
}

Napi::Value ModuleHandle::start_inference(Napi::Env env, std::function<torch::Tensor(EncoderModel&)> compute) {
  return PromiseJob<torch::Tensor>::start(
      env,
      [model = model_, mutex = mutex_, compute = std::move(compute)]() {
        std::lock_guard<std::mutex> lock(*mutex);
        torch::NoGradGuard no_grad;
        return compute(*model);
      },
      [](Napi::Env env, torch::Tensor& out) -> Napi::Value { return TensorHandle::wrap(env, out); },
      use_->enter(use_));
}

Napi::Value ModuleHandle::call(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    check_usable("call");
    if (!call_) throw std::invalid_argument("call() is for building blocks; use forward() on a whole model");
    auto inputs = tensor_list(info[0], "inputs");
    std::lock_guard<std::mutex> lock(*mutex_);
    torch::NoGradGuard no_grad;
    return TensorHandle::wrap(env, call_(inputs));
  });
}

Napi::Value ModuleHandle::vjp(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    check_usable("vjp");
    if (!call_) throw std::invalid_argument("vjp() is for building blocks");
    auto inputs = tensor_list(info[0], "inputs");
    auto grad_output = TensorHandle::unwrap(info[1], "gradOutput");
    std::lock_guard<std::mutex> lock(*mutex_);
    torch::AutoGradMode grad_on(true);

    // Differentiate with respect to every floating-point input and every parameter.
    std::vector<torch::Tensor> wrt;
    std::vector<int> input_slot(inputs.size(), -1);
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined() && inputs[i].is_floating_point()) {
        inputs[i] = inputs[i].detach().requires_grad_(true);
        input_slot[i] = static_cast<int>(wrt.size());
        wrt.push_back(inputs[i]);
      }
    }
    auto params = module_->named_parameters();
    const size_t first_param = wrt.size();
    for (const auto& item : params) wrt.push_back(item.value());

    auto out = call_(inputs);
    if (grad_output.sizes() != out.sizes()) {
      throw std::invalid_argument("gradOutput has shape " + shape_text(grad_output) + " but the output has shape " +
                                  shape_text(out));
    }
    auto grads = torch::autograd::grad({out}, wrt, {grad_output.to(out.options())}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);

    auto zeros_if_unused = [&](size_t k) { return grads[k].defined() ? grads[k] : torch::zeros_like(wrt[k]); };
    auto input_grads = Napi::Array::New(env, inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      input_grads.Set(static_cast<uint32_t>(i),
                      input_slot[i] < 0 ? env.Null() : TensorHandle::wrap(env, zeros_if_unused(input_slot[i])));
    }
    NamedTensors named_grads;
    size_t k = first_param;
    for (const auto& item : params) named_grads.emplace_back(item.key(), zeros_if_unused(k++));
    auto param_grads = Napi::Object::New(env);
    for (const auto& [name, grad] : unpack_qkv(named_grads)) param_grads.Set(name, TensorHandle::wrap(env, grad));

    auto result = Napi::Object::New(env);
    result.Set("output", TensorHandle::wrap(env, out.detach()));
    result.Set("inputs", input_grads);
    result.Set("parameters", param_grads);
    return result;
  });
}

// ---------------------------------------------------------------------------
// Lifetime
// ---------------------------------------------------------------------------

// Resolves once every job submitted before it (steps, forward passes) has finished:
// the executor runs jobs in order, so an empty job is enough.
Napi::Value ModuleHandle::idle(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    return PromiseJob<bool>::start(
        env, []() { return true; }, [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

// Frees the weights now instead of whenever the garbage collector gets to the
// handle. Jobs still running keep their own reference and free it when they end;
// a Trainer made for this model holds one too (dispose it as well).
Napi::Value ModuleHandle::dispose(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (disposed_) return env.Undefined();
    disposed_ = true;
    {
      std::lock_guard<std::mutex> lock(*mutex_);
      call_ = nullptr;
      model_.reset();
      module_.reset();
    }
    if (use_->busy()) {
      Executor::instance().submit([]() { compat::release_freed_memory(); });  // after the jobs let go
    } else {
      compat::release_freed_memory();
    }
    return env.Undefined();
  });
}

}  // namespace roformer::js
