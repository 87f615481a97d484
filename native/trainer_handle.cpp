#include "trainer_handle.h"

#include "compat.h"
#include "executor.h"
#include "module_handle.h"
#include "tensor_handle.h"

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
  return t;
}

MicroBatch parse_batch(const Napi::Value& value, const std::string& what) {
  if (!value.IsObject()) throw Napi::TypeError::New(value.Env(), what + " must be an object");
  auto o = value.As<Napi::Object>();
  MicroBatch b;
  b.input_ids = TensorHandle::unwrap(o.Get("inputIds"), what + ".inputIds");
  b.token_type_ids = TensorHandle::unwrap(o.Get("tokenTypeIds"), what + ".tokenTypeIds", /*optional=*/true);
  b.attention_mask = TensorHandle::unwrap(o.Get("attentionMask"), what + ".attentionMask", /*optional=*/true);
  b.target_positions = TensorHandle::unwrap(o.Get("targetPositions"), what + ".targetPositions");
  b.target_ids = TensorHandle::unwrap(o.Get("targetIds"), what + ".targetIds");
  return b;
}

void claim(const std::shared_ptr<std::atomic<bool>>& busy, const char* what) {
  bool expected = false;
  if (!busy->compare_exchange_strong(expected, true)) {
    throw std::invalid_argument(std::string(what) +
                                ": the previous step or evaluation of this trainer is still running; await it first");
  }
}

}  // namespace

Napi::Function TrainerHandle::define_class(Napi::Env env) {
  return DefineClass(env, "NativeTrainer",
                         {
                             InstanceMethod<&TrainerHandle::step>("step"),
                             InstanceMethod<&TrainerHandle::evaluate>("evaluate"),
                             InstanceMethod<&TrainerHandle::state_tensors>("stateTensors"),
                             InstanceMethod<&TrainerHandle::load_state_tensors>("loadStateTensors"),
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

Napi::Value TrainerHandle::step(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber()) {
      throw_type_error(env, "step(microBatches: object[], lr: number, alpha: number)");
    }
    auto array = info[0].As<Napi::Array>();
    std::vector<MicroBatch> batches;
    for (uint32_t i = 0; i < array.Length(); ++i) batches.push_back(parse_batch(array.Get(i), "microBatches[" + std::to_string(i) + "]"));
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
    auto given = info[0].As<Napi::Object>();
    std::map<std::string, torch::Tensor> state;
    auto keys = given.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const auto key = keys.Get(i).ToString().Utf8Value();
      state[key] = TensorHandle::unwrap(given.Get(key), "state['" + key + "']");
    }
    trainer_->load_state_tensors(state);
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
