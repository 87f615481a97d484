#include "distributed_handle.h"

namespace roformer::js {

namespace {

// Options are named in errors as "createProcessGroup: <key>".
const std::string kOption = "createProcessGroup: ";

// A JS array of the values (numbers or strings).
template <typename T>
Napi::Value to_js_array(Napi::Env env, const std::vector<T>& values) {
  auto out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(static_cast<uint32_t>(i), values[i]);
  return out;
}

}  // namespace

Napi::Function ProcessGroupHandle::define_class(Napi::Env env) {
  return DefineClass(env, "NativeProcessGroup",
                     {
                         InstanceAccessor<&ProcessGroupHandle::rank>("rank"),
                         InstanceAccessor<&ProcessGroupHandle::world_size>("worldSize"),
                         InstanceAccessor<&ProcessGroupHandle::backend>("backend"),
                         InstanceMethod<&ProcessGroupHandle::all_reduce>("allReduce"),
                         InstanceMethod<&ProcessGroupHandle::all_gather>("allGather"),
                         InstanceMethod<&ProcessGroupHandle::barrier>("barrier"),
                         InstanceMethod<&ProcessGroupHandle::shutdown>("shutdown"),
                     });
}

ProcessGroupHandle::ProcessGroupHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroupHandle>(info) {}

Napi::Value ProcessGroupHandle::create(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw_type_error(env, "createProcessGroup(options: object)");
    auto o = info[0].As<Napi::Object>();
    DistributedOptions options;
    options.rank = integer_field(o, "rank", 0, kOption);
    options.world_size = integer_field(o, "worldSize", 1, kOption);
    options.local_rank = integer_field(o, "localRank", 0, kOption);
    options.master_addr = string_field(o, "masterAddr", options.master_addr, kOption);
    options.master_port = integer_field(o, "masterPort", options.master_port, kOption);
    options.timeout_seconds = number_field(o, "timeoutSeconds", options.timeout_seconds, kOption);
    options.backend = string_field(o, "backend", options.backend, kOption);
    options.device = string_field(o, "device", options.device, kOption);
    return PromiseJob<std::shared_ptr<Distributed>>::start(
        env, [options]() { return Distributed::create(options); },
        [](Napi::Env env, std::shared_ptr<Distributed>& created) -> Napi::Value {
          auto object = addon_data(env).process_group_constructor.New({});
          Unwrap(object)->distributed_ = created;
          return object;
        });
  });
}

std::shared_ptr<Distributed> ProcessGroupHandle::unwrap(const Napi::Value& value, const std::string& what) {
  auto env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).process_group_constructor.Value())) {
    throw Napi::TypeError::New(env, what + " must be a NativeProcessGroup (from createProcessGroup)");
  }
  return Unwrap(value.As<Napi::Object>())->group(what.c_str());
}

std::shared_ptr<Distributed> ProcessGroupHandle::group(const char* method) const {
  if (!distributed_) throw std::invalid_argument(std::string(method) + ": the process group was shut down");
  return distributed_;
}

Napi::Value ProcessGroupHandle::rank(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), static_cast<double>(group("rank")->rank())); });
}

Napi::Value ProcessGroupHandle::world_size(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(group("worldSize")->world_size()));
  });
}

Napi::Value ProcessGroupHandle::backend(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value { return Napi::String::New(info.Env(), group("backend")->backend()); });
}

Napi::Value ProcessGroupHandle::all_reduce(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsArray()) throw_type_error(env, "allReduce(values: number[], op?: 'sum' | 'min' | 'max')");
    auto array = info[0].As<Napi::Array>();
    std::vector<double> values;
    for (uint32_t i = 0; i < array.Length(); ++i) {
      if (!array.Get(i).IsNumber()) throw_type_error(env, "allReduce: values must be numbers");
      values.push_back(array.Get(i).As<Napi::Number>().DoubleValue());
    }
    const std::string op = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
    if (op != "sum" && op != "min" && op != "max") throw_type_error(env, "allReduce: op must be 'sum', 'min' or 'max'");
    auto distributed = group("allReduce");
    return PromiseJob<std::vector<double>>::start(
        env, [=]() { return distributed->all_reduce(values, op); },
        [](Napi::Env env, std::vector<double>& result) { return to_js_array(env, result); });
  });
}

Napi::Value ProcessGroupHandle::all_gather(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw_type_error(env, "allGather(value: string)");
    const auto value = info[0].As<Napi::String>().Utf8Value();
    auto distributed = group("allGather");
    return PromiseJob<std::vector<std::string>>::start(
        env, [=]() { return distributed->all_gather(value); },
        [](Napi::Env env, std::vector<std::string>& result) { return to_js_array(env, result); });
  });
}

Napi::Value ProcessGroupHandle::barrier(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto distributed = group("barrier");
    return PromiseJob<bool>::start(
        env, [=]() { distributed->barrier(); return true; },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

Napi::Value ProcessGroupHandle::shutdown(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!distributed_) return env.Undefined();
    auto distributed = std::move(distributed_);
    distributed_.reset();
    // Behind every job already queued (a step still using the group finishes first).
    return PromiseJob<bool>::start(
        env, [distributed]() { distributed->shutdown(); return true; },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

}  // namespace roformer::js
