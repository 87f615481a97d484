#include "trainer_handle.h"

#include "compat.h"
#include "distributed_handle.h"
#include "executor.h"
#include "module_handle.h"
#include "tensor_handle.h"

#include <cmath>

namespace roformer::js {

namespace {

// Trainer options are named in errors as "trainer option <key>".
const std::string kOption = "trainer option ";

TrainerOptions parse_options(const Napi::Object& o) {
  TrainerOptions t;
  auto& opt = t.optimizer;
  opt.kind = string_field(o, "optimizer", opt.kind, kOption);
  opt.beta1 = number_field(o, "beta1", opt.beta1, kOption);
  opt.beta2 = number_field(o, "beta2", opt.beta2, kOption);
  opt.eps = number_field(o, "eps", opt.kind == "lamb" ? 1e-6 : opt.eps, kOption);
  opt.weight_decay = number_field(o, "weightDecay", opt.weight_decay, kOption);
  opt.adafactor_scale_parameter = boolean_field(o, "scaleParameter", true);
  t.max_grad_norm = number_field(o, "maxGradNorm", t.max_grad_norm, kOption);
  t.precision = string_field(o, "precision", t.precision, kOption);
  t.loss_scaling = optional_boolean_field(o, "lossScaling");
  t.static_step = optional_boolean_field(o, "staticStep");
  t.cuda_graphs = optional_boolean_field(o, "cudaGraphs");
  t.init_scale = number_field(o, "initScale", t.init_scale, kOption);
  t.growth_factor = number_field(o, "growthFactor", t.growth_factor, kOption);
  t.backoff_factor = number_field(o, "backoffFactor", t.backoff_factor, kOption);
  t.growth_interval = static_cast<int64_t>(number_field(o, "growthInterval", static_cast<double>(t.growth_interval), kOption));
  if (has_field(o, "gradientNormalization")) {
    t.gradient_normalization = parse_gradient_normalization(string_field(o, "gradientNormalization", "", kOption));
  }
  if (has_field(o, "processGroup") && !o.Get("processGroup").IsNull()) {
    t.distributed = ProcessGroupHandle::unwrap(o.Get("processGroup"), kOption + "processGroup");
  }
  // heads: { <task>: { kind, numLabels, headSize? } }
  if (has_field(o, "heads") && !o.Get("heads").IsNull()) {
    auto heads = require_object(o.Get("heads"), kOption + "heads");
    auto names = heads.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const auto task = names.Get(i).ToString().Utf8Value();
      auto spec = require_object(heads.Get(task), "heads." + task);
      const std::string where = "heads." + task + ".";
      HeadConfig config;
      config.kind = string_field(spec, "kind", "", where);
      config.num_labels = integer_field(spec, "numLabels", config.kind == "multiple-choice" ? 1 : 0, where);
      config.head_size = integer_field(spec, "headSize", config.head_size, where);
      t.heads.emplace_back(task, config);
    }
  }
  return t;
}

MicroBatch parse_batch(const Napi::Value& value, const std::string& what) {
  auto o = require_object(value, what);
  MicroBatch b;
  if (!o.Get("task").IsNull()) b.task = string_field(o, "task", "", what + ".");
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

// The argument of loadHeadParameters / loadStateTensors / loadRandomState: a JS object
// of Tensors by name (saved head, optimiser or random state); `signature` names the
// method in the TypeError when it is not an object.
std::map<std::string, torch::Tensor> state_argument(const Napi::CallbackInfo& info, const char* signature) {
  if (info.Length() < 1 || !info[0].IsObject()) throw_type_error(info.Env(), signature);
  auto given = info[0].As<Napi::Object>();
  std::map<std::string, torch::Tensor> state;
  auto keys = given.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const auto key = keys.Get(i).ToString().Utf8Value();
    state[key] = TensorHandle::unwrap(given.Get(key), "state['" + key + "']");
  }
  return state;
}

// Tensors by name as a JS object of Tensor handles.
template <typename NamedTensorList>
Napi::Object tensors_object(Napi::Env env, const NamedTensorList& tensors) {
  auto result = Napi::Object::New(env);
  for (const auto& [name, tensor] : tensors) result.Set(name, TensorHandle::wrap(env, tensor));
  return result;
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

template <typename Result>
Napi::Value TrainerHandle::start_job(Napi::Env env, const char* method, std::function<Result(Trainer&)> work,
                                     typename PromiseJob<Result>::Done done) {
  this->trainer(method);
  return start_exclusive_job<Result>(
      env, busy_, std::string(method) + ": the previous step or evaluation of this trainer is still running; await it first",
      model_use_, [trainer = trainer_, work = std::move(work)]() { return work(*trainer); }, std::move(done));
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
    return start_job<StepResult>(
        env, "step", [=](Trainer& trainer) { return trainer.step(batches, lr, alpha); },
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
          if (!r.cuda_graph.empty()) o.Set("cudaGraph", r.cuda_graph);
          return o;
        });
  });
}

Napi::Value TrainerHandle::evaluate(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto batch = parse_batch(info[0], "batch");
    return start_job<Trainer::EvalResult>(
        env, "evaluate", [=](Trainer& trainer) { return trainer.evaluate(batch); },
        [](Napi::Env env, Trainer::EvalResult& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("lossSum", r.loss_sum);
          o.Set("correct", static_cast<double>(r.correct));
          o.Set("targets", static_cast<double>(r.targets));
          return o;
        });
  });
}

Napi::Value TrainerHandle::predict(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto batch = parse_batch(info[0], "batch");
    return start_job<HeadPrediction>(
        env, "predict", [=](Trainer& trainer) { return trainer.predict(batch); },
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
    const auto normalization = info.Length() > 2 && info[2].IsString()
                                   ? parse_gradient_normalization(info[2].As<Napi::String>().Utf8Value())
                                   : this->trainer("gradients").options().gradient_normalization;
    return start_job<GradientResult>(
        env, "gradients", [=](Trainer& trainer) { return trainer.gradients(batches, alpha, normalization); },
        [](Napi::Env env, GradientResult& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          auto grads = Napi::Object::New(env);
          for (const auto& [name, tensor] : r.gradients) grads.Set(name, TensorHandle::wrap(env, tensor));
          o.Set("gradients", grads);
          o.Set("tasks", task_results(env, r.tasks));
          return o;
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
    return tensors_object(env, idle_trainer("headParameters").head_parameters());
  });
}

Napi::Value TrainerHandle::load_head_parameters(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto state = state_argument(info, "loadHeadParameters(state: object)");
    idle_trainer("loadHeadParameters").load_head_parameters(state);
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::state_tensors(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    return tensors_object(env, idle_trainer("stateTensors").state_tensors());
  });
}

Napi::Value TrainerHandle::load_state_tensors(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto state = state_argument(info, "loadStateTensors(state: object)");
    idle_trainer("loadStateTensors").load_state_tensors(state);
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::random_state(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    return tensors_object(env, trainer("randomState").random_state());
  });
}

Napi::Value TrainerHandle::load_random_state(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto state = state_argument(info, "loadRandomState(state: object)");
    idle_trainer("loadRandomState").load_random_state(state);
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
    auto& trainer = idle_trainer("setCounters");
    auto o = info[0].As<Napi::Object>();
    const std::string where = "setCounters: counters.";
    TrainerCounters c;
    c.step = static_cast<int64_t>(number_field(o, "step", 0, where));
    c.skipped_steps = static_cast<int64_t>(number_field(o, "skippedSteps", 0, where));
    c.loss_scale = number_field(o, "lossScale", 1, where);
    c.growth_tracker = static_cast<int64_t>(number_field(o, "growthTracker", 0, where));
    trainer.set_counters(c);
    return env.Undefined();
  });
}

Napi::Value TrainerHandle::busy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), *busy_); }

Trainer& TrainerHandle::trainer(const char* method) const {
  if (!trainer_) throw std::invalid_argument(std::string(method) + ": this trainer was disposed and can no longer be used");
  return *trainer_;
}

Trainer& TrainerHandle::idle_trainer(const char* method) const {
  auto& trainer = this->trainer(method);
  if (*busy_) throw std::invalid_argument(std::string(method) + ": a step is running; await it first");
  return trainer;
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
