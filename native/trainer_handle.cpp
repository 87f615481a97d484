#include "trainer_handle.h"

#include "compat.h"
#include "distributed_handle.h"
#include "executor.h"
#include "module_handle.h"
#include "tensor_handle.h"

#include <cmath>

namespace roformer::js {

namespace {

double number_option(const Napi::Object& o, const char* key, double fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  if (!o.Get(key).IsNumber()) {
    throw Napi::TypeError::New(o.Env(), std::string("trainer option ") + key + " must be a number");
  }
  return o.Get(key).As<Napi::Number>().DoubleValue();
}

std::string string_option(const Napi::Object& o, const char* key, const std::string& fallback) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return fallback;
  if (!o.Get(key).IsString()) {
    throw Napi::TypeError::New(o.Env(), std::string("trainer option ") + key + " must be a string");
  }
  return o.Get(key).As<Napi::String>().Utf8Value();
}

TrainerOptions parse_options(const Napi::Object& o) {
  TrainerOptions t;
  auto& opt = t.optimizer;
  opt.kind = string_option(o, "optimizer", opt.kind);
  opt.beta1 = number_option(o, "beta1", opt.beta1);
  opt.beta2 = number_option(o, "beta2", opt.beta2);
  opt.eps = number_option(o, "eps", opt.kind == "lamb" ? 1e-6 : opt.eps);
  opt.weight_decay = number_option(o, "weightDecay", opt.weight_decay);
  opt.adafactor_scale_parameter =
      !o.Has("scaleParameter") || o.Get("scaleParameter").IsUndefined() || o.Get("scaleParameter").ToBoolean().Value();
  t.max_grad_norm = number_option(o, "maxGradNorm", t.max_grad_norm);
  t.precision = string_option(o, "precision", t.precision);
  if (o.Has("lossScaling") && !o.Get("lossScaling").IsUndefined()) t.loss_scaling = o.Get("lossScaling").ToBoolean();
  t.init_scale = number_option(o, "initScale", t.init_scale);
  t.growth_factor = number_option(o, "growthFactor", t.growth_factor);
  t.backoff_factor = number_option(o, "backoffFactor", t.backoff_factor);
  t.growth_interval = static_cast<int64_t>(number_option(o, "growthInterval", static_cast<double>(t.growth_interval)));
  t.gradient_normalization = string_option(o, "gradientNormalization", t.gradient_normalization);
  if (o.Has("processGroup") && !o.Get("processGroup").IsUndefined() && !o.Get("processGroup").IsNull()) {
    t.distributed = ProcessGroupHandle::unwrap(o.Get("processGroup"), "trainer option processGroup");
  }
  // heads: { <task>: { kind, numLabels, headSize? } }
  if (o.Has("heads") && !o.Get("heads").IsUndefined() && !o.Get("heads").IsNull()) {
    if (!o.Get("heads").IsObject()) throw Napi::TypeError::New(o.Env(), "trainer option heads must be an object");
    auto heads = o.Get("heads").As<Napi::Object>();
    auto names = heads.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const auto task = names.Get(i).ToString().Utf8Value();
      if (!heads.Get(task).IsObject()) throw Napi::TypeError::New(o.Env(), "heads." + task + " must be an object");
      auto spec = heads.Get(task).As<Napi::Object>();
      HeadConfig config;
      config.kind = string_option(spec, "kind", "");
      const double labels = number_option(spec, "numLabels", config.kind == "multiple-choice" ? 1 : 0);
      const double size = number_option(spec, "headSize", static_cast<double>(config.head_size));
      if (labels != static_cast<double>(static_cast<int64_t>(labels)) || size != static_cast<double>(static_cast<int64_t>(size))) {
        throw Napi::TypeError::New(o.Env(), "heads." + task + ": numLabels and headSize must be integers");
      }
      config.num_labels = static_cast<int64_t>(labels);
      config.head_size = static_cast<int64_t>(size);
      t.heads.emplace_back(task, config);
    }
  }
  return t;
}

MicroBatch parse_batch(const Napi::Value& value, const std::string& what) {
  if (!value.IsObject()) throw Napi::TypeError::New(value.Env(), what + " must be an object");
  auto o = value.As<Napi::Object>();
  MicroBatch b;
  if (o.Has("task") && !o.Get("task").IsUndefined() && !o.Get("task").IsNull()) {
    if (!o.Get("task").IsString()) throw Napi::TypeError::New(value.Env(), what + ".task must be a string");
    b.task = o.Get("task").As<Napi::String>().Utf8Value();
  }
  const bool mlm = b.task.empty() || b.task == "mlm";
  b.input_ids = TensorHandle::unwrap(o.Get("inputIds"), what + ".inputIds");
  b.token_type_ids = TensorHandle::unwrap(o.Get("tokenTypeIds"), what + ".tokenTypeIds", /*optional=*/true);
  b.attention_mask = TensorHandle::unwrap(o.Get("attentionMask"), what + ".attentionMask", /*optional=*/true);
  // MLM batches need their targets; a head's labels are checked by the head, per kind.
  b.target_positions = TensorHandle::unwrap(o.Get("targetPositions"), what + ".targetPositions", /*optional=*/!mlm);
  b.target_ids = TensorHandle::unwrap(o.Get("targetIds"), what + ".targetIds", /*optional=*/!mlm);
  b.targets.labels = TensorHandle::unwrap(o.Get("labels"), what + ".labels", /*optional=*/true);
  b.targets.choice_mask = TensorHandle::unwrap(o.Get("choiceMask"), what + ".choiceMask", /*optional=*/true);
  b.targets.span_labels = TensorHandle::unwrap(o.Get("spanLabels"), what + ".spanLabels", /*optional=*/true);
  b.targets.span_targets = TensorHandle::unwrap(o.Get("spanTargets"), what + ".spanTargets", /*optional=*/true);
  return b;
}

// A JS object of Tensors by name, e.g. saved optimiser or head state.
std::map<std::string, torch::Tensor> named_tensors(const Napi::Object& given) {
  std::map<std::string, torch::Tensor> state;
  auto keys = given.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const auto key = keys.Get(i).ToString().Utf8Value();
    state[key] = TensorHandle::unwrap(given.Get(key), "state['" + key + "']");
  }
  return state;
}

void claim(const std::shared_ptr<std::atomic<bool>>& busy, const char* what) {
  bool expected = false;
  if (!busy->compare_exchange_strong(expected, true)) {
    throw std::invalid_argument(std::string(what) +
                                ": the previous step or evaluation of this trainer is still running; await it first");
  }
}

Napi::Array task_results(Napi::Env env, const std::vector<TaskStepResult>& tasks) {
  auto array = Napi::Array::New(env, tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("task", tasks[i].task);
    o.Set("loss", tasks[i].loss);
    o.Set("gradNorm", tasks[i].grad_norm);
    o.Set("weight", tasks[i].weight);
    o.Set("examples", static_cast<double>(tasks[i].examples));
    array.Set(static_cast<uint32_t>(i), o);
  }
  return array;
}

std::vector<MicroBatch> parse_batches(const Napi::Value& value) {
  auto array = value.As<Napi::Array>();
  std::vector<MicroBatch> batches;
  for (uint32_t i = 0; i < array.Length(); ++i) batches.push_back(parse_batch(array.Get(i), "microBatches[" + std::to_string(i) + "]"));
  return batches;
}

}  // namespace

Napi::Function TrainerHandle::define_class(Napi::Env env) {
  return DefineClass(env, "NativeTrainer",
                         {
                             InstanceMethod<&TrainerHandle::step>("step"),
                             InstanceMethod<&TrainerHandle::evaluate>("evaluate"),
                             InstanceMethod<&TrainerHandle::predict>("predict"),
                             InstanceMethod<&TrainerHandle::gradients>("gradients"),
                             InstanceMethod<&TrainerHandle::heads>("heads"),
                             InstanceMethod<&TrainerHandle::head_parameters>("headParameters"),
                             InstanceMethod<&TrainerHandle::load_head_parameters>("loadHeadParameters"),
                             InstanceMethod<&TrainerHandle::state_tensors>("stateTensors"),
                             InstanceMethod<&TrainerHandle::load_state_tensors>("loadStateTensors"),
                             InstanceMethod<&TrainerHandle::random_state>("randomState"),
                             InstanceMethod<&TrainerHandle::load_random_state>("loadRandomState"),
                             InstanceMethod<&TrainerHandle::counters>("counters"),
                             InstanceMethod<&TrainerHandle::set_counters>("setCounters"),
                             InstanceAccessor<&TrainerHandle::busy>("busy"),
                             InstanceMethod<&TrainerHandle::dispose>("dispose"),
                             InstanceAccessor<&TrainerHandle::disposed>("disposed"),
                         });
}

TrainerHandle::TrainerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerHandle>(info) {}

Napi::Value TrainerHandle::create(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto [model, mutex] = ModuleHandle::unwrap_model(info[0], "createTrainer(model)");
    const auto options = parse_options(info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>()
                                                                                 : Napi::Object::New(env));
    auto object = addon_data(env).trainer_constructor.New({});
    Unwrap(object)->trainer_ = std::make_shared<Trainer>(model, mutex, options);
    Unwrap(object)->model_use_ = ModuleHandle::use_of(info[0]);
    return object;
  });
}

Napi::Value TrainerHandle::optimizer_steps(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 4 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsArray() || !info[3].IsArray()) {
      throw_type_error(env, "optimizerSteps(options, params, gradsPerStep[], lrs[])");
    }
    const auto options = parse_options(info[0].As<Napi::Object>()).optimizer;
    auto params_js = info[1].As<Napi::Object>();
    NamedTensors params;
    auto names = params_js.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const auto name = names.Get(i).ToString().Utf8Value();
      params.emplace_back(name, TensorHandle::unwrap(params_js.Get(name), "params['" + name + "']"));
    }
    auto optimizer = make_optimizer(params, options);
    auto grads_per_step = info[2].As<Napi::Array>();
    auto lrs = info[3].As<Napi::Array>();
    if (grads_per_step.Length() != lrs.Length()) throw std::invalid_argument("one learning rate per step is needed");
    for (uint32_t s = 0; s < grads_per_step.Length(); ++s) {
      auto grads = grads_per_step.Get(s).As<Napi::Object>();
      for (auto& [name, p] : params) {
        p.mutable_grad() = TensorHandle::unwrap(grads.Get(name), "grads[" + std::to_string(s) + "]['" + name + "']");
      }
      optimizer->step(lrs.Get(s).As<Napi::Number>().DoubleValue());
    }
    for (auto& [name, p] : params) p.mutable_grad().reset();
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::zlpr_loss(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[1].IsObject()) throw_type_error(env, "zlprLoss(scores, { targets?, positives?, valid? })");
    auto options = info[1].As<Napi::Object>();
    auto scores = TensorHandle::unwrap(info[0], "scores").detach().clone().set_requires_grad(true);
    auto targets = TensorHandle::unwrap(options.Get("targets"), "targets", /*optional=*/true);
    auto positives = TensorHandle::unwrap(options.Get("positives"), "positives", /*optional=*/true);
    auto valid = TensorHandle::unwrap(options.Get("valid"), "valid", /*optional=*/true);
    if (targets.defined() == positives.defined()) throw std::invalid_argument("zlprLoss: give targets or positives");
    auto loss = positives.defined() ? sparse_zlpr_loss(scores, positives) : roformer::zlpr_loss(scores, targets, valid);
    loss.sum().backward();
    auto o = Napi::Object::New(env);
    o.Set("loss", TensorHandle::wrap(env, loss.detach()));
    o.Set("grad", TensorHandle::wrap(env, scores.grad()));
    return o;
  });
}

Napi::Value TrainerHandle::step(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber()) {
      throw_type_error(env, "step(microBatches: object[], lr: number, alpha: number)");
    }
    auto batches = parse_batches(info[0]);
    const double lr = info[1].As<Napi::Number>().DoubleValue();
    const double alpha = info[2].As<Napi::Number>().DoubleValue();
    auto trainer = trainer_;
    this->trainer("step");
    claim(busy_, "step");
    auto busy = busy_;
    auto model_done = model_use_->enter(model_use_);
    return PromiseJob<StepResult>::start(
        env,
        [=]() { return trainer->step(batches, lr, alpha); },
        [](Napi::Env env, StepResult& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("loss", r.loss);
          o.Set("gradNorm", r.grad_norm);
          o.Set("lossScale", r.loss_scale);
          o.Set("skipped", r.skipped);
          o.Set("targets", static_cast<double>(r.targets));
          o.Set("step", static_cast<double>(r.step));
          o.Set("skippedSteps", static_cast<double>(r.skipped_steps));
          o.Set("tasks", task_results(env, r.tasks));
          return o;
        },
        // Busy until the Promise settles, so JS never sees a finished-but-unsettled step as free.
        [busy, model_done]() {
          *busy = false;
          model_done();
        });
  });
}

Napi::Value TrainerHandle::evaluate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto batch = parse_batch(info[0], "batch");
    auto trainer = trainer_;
    this->trainer("evaluate");
    claim(busy_, "evaluate");
    auto busy = busy_;
    auto model_done = model_use_->enter(model_use_);
    return PromiseJob<Trainer::EvalResult>::start(
        env,
        [=]() { return trainer->evaluate(batch); },
        [](Napi::Env env, Trainer::EvalResult& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("lossSum", r.loss_sum);
          o.Set("correct", static_cast<double>(r.correct));
          o.Set("targets", static_cast<double>(r.targets));
          return o;
        },
        [busy, model_done]() {
          *busy = false;
          model_done();
        });
  });
}

Napi::Value TrainerHandle::predict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto batch = parse_batch(info[0], "batch");
    auto trainer = trainer_;
    this->trainer("predict");
    claim(busy_, "predict");
    auto busy = busy_;
    auto model_done = model_use_->enter(model_use_);
    return PromiseJob<HeadPrediction>::start(
        env,
        [=]() { return trainer->predict(batch); },
        [](Napi::Env env, HeadPrediction& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("task", r.task);
          o.Set("kind", r.kind);
          o.Set("scores", TensorHandle::wrap(env, r.scores));
          o.Set("loss", std::isnan(r.loss) ? env.Null() : Napi::Number::New(env, r.loss));
          if (r.span_entries.defined()) {
            o.Set("spans", TensorHandle::wrap(env, r.span_entries));
            o.Set("spanScores", TensorHandle::wrap(env, r.span_scores));
          }
          return o;
        },
        [busy, model_done]() {
          *busy = false;
          model_done();
        });
  });
}

Napi::Value TrainerHandle::gradients(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber()) {
      throw_type_error(env, "gradients(microBatches: object[], alpha: number, normalization?: string)");
    }
    auto batches = parse_batches(info[0]);
    const double alpha = info[1].As<Napi::Number>().DoubleValue();
    const std::string normalization = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value()
                                                                              : this->trainer("gradients").options().gradient_normalization;
    claim(busy_, "gradients");
    auto trainer = trainer_;
    auto busy = busy_;
    auto model_done = model_use_->enter(model_use_);
    return PromiseJob<GradientResult>::start(
        env,
        [=]() { return trainer->gradients(batches, alpha, normalization); },
        [](Napi::Env env, GradientResult& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          auto grads = Napi::Object::New(env);
          for (const auto& [name, tensor] : r.gradients) grads.Set(name, TensorHandle::wrap(env, tensor));
          o.Set("gradients", grads);
          o.Set("tasks", task_results(env, r.tasks));
          return o;
        },
        [busy, model_done]() {
          *busy = false;
          model_done();
        });
  });
}

Napi::Value TrainerHandle::heads(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
  auto result = Napi::Object::New(env);
  for (const auto& [task, config] : this->trainer("heads").head_configs()) {
    auto o = Napi::Object::New(env);
    o.Set("kind", config.kind);
    o.Set("numLabels", static_cast<double>(config.num_labels));
    if (config.kind == "span") o.Set("headSize", static_cast<double>(config.head_size));
    result.Set(task, o);
  }
  return result;
  });
}

Napi::Value TrainerHandle::head_parameters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto result = Napi::Object::New(env);
    auto& trainer = this->trainer("headParameters");
    if (*busy_) throw std::invalid_argument("headParameters: a step is running; await it first");
    for (const auto& [name, tensor] : trainer.head_parameters()) result.Set(name, TensorHandle::wrap(env, tensor));
    return result;
  });
}

Napi::Value TrainerHandle::load_head_parameters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw_type_error(env, "loadHeadParameters(state: object)");
    this->trainer("loadHeadParameters");
    if (*busy_) throw std::invalid_argument("loadHeadParameters: a step is running; await it first");
    trainer_->load_head_parameters(named_tensors(info[0].As<Napi::Object>()));
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::state_tensors(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto& trainer = this->trainer("stateTensors");
    if (*busy_) throw std::invalid_argument("stateTensors: a step is running; await it first");
    auto result = Napi::Object::New(env);
    for (const auto& [key, tensor] : trainer.state_tensors()) result.Set(key, TensorHandle::wrap(env, tensor));
    return result;
  });
}

Napi::Value TrainerHandle::load_state_tensors(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw_type_error(env, "loadStateTensors(state: object)");
    this->trainer("loadStateTensors");
    if (*busy_) throw std::invalid_argument("loadStateTensors: a step is running; await it first");
    trainer_->load_state_tensors(named_tensors(info[0].As<Napi::Object>()));
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::random_state(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto o = Napi::Object::New(env);
    for (auto& [key, tensor] : trainer("randomState").random_state()) o.Set(key, TensorHandle::wrap(env, tensor));
    return o;
  });
}

Napi::Value TrainerHandle::load_random_state(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw_type_error(env, "loadRandomState(state: object)");
    this->trainer("loadRandomState");
    if (*busy_) throw std::invalid_argument("loadRandomState: a step is running; await it first");
    trainer_->load_random_state(named_tensors(info[0].As<Napi::Object>()));
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::counters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
  const auto c = trainer("counters").counters();
  auto o = Napi::Object::New(env);
  o.Set("step", static_cast<double>(c.step));
  o.Set("skippedSteps", static_cast<double>(c.skipped_steps));
  o.Set("lossScale", c.loss_scale);
  o.Set("growthTracker", static_cast<double>(c.growth_tracker));
  return o;
  });
}

Napi::Value TrainerHandle::set_counters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw_type_error(env, "setCounters(counters: object)");
    this->trainer("setCounters");
    if (*busy_) throw std::invalid_argument("setCounters: a step is running; await it first");
    auto o = info[0].As<Napi::Object>();
    TrainerCounters c;
    c.step = static_cast<int64_t>(number_option(o, "step", 0));
    c.skipped_steps = static_cast<int64_t>(number_option(o, "skippedSteps", 0));
    c.loss_scale = number_option(o, "lossScale", 1);
    c.growth_tracker = static_cast<int64_t>(number_option(o, "growthTracker", 0));
    trainer_->set_counters(c);
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::busy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), *busy_); }

Trainer& TrainerHandle::trainer(const char* method) const {
  if (!trainer_) throw std::invalid_argument(std::string(method) + ": this trainer was disposed and can no longer be used");
  return *trainer_;
}

Napi::Value TrainerHandle::disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !trainer_); }

// Frees the optimiser state (and the trainer's hold on the model) now. A step still
// running keeps its own reference and frees it when it ends.
Napi::Value TrainerHandle::dispose(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!trainer_) return env.Undefined();
    trainer_.reset();
    if (*busy_) {
      Executor::instance().submit([]() { compat::release_freed_memory(); });  // after the step lets go
    } else {
      compat::release_freed_memory();
    }
    return env.Undefined();
  });
}

}  // namespace roformer::js
