// The native boundary: how C++ exceptions become JS Errors, how JS arguments and
// option fields are read and checked, and how heavy work runs off the JS thread as a
// Promise (alone on its object, where it must be).
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include "encoder_model.h"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace roformer::js {

// A unit of work whose result settles a Promise on the JS thread.
class Job {
 public:
  virtual ~Job() = default;
  virtual void run() = 0;                 // on the executor thread; must not throw
  virtual void settle(Napi::Env env) = 0; // on the JS thread
};

// Settles a completed job on the JS thread and deletes it (defined in addon.cpp).
void settle_completed_job(Napi::Env env, Napi::Function, void* context, Job* job);
using Completions = Napi::TypedThreadSafeFunction<void, Job, settle_completed_job>;

// The way completed jobs come back to one environment's JS thread. `open` turns
// false when the environment is torn down (process exit, a worker terminated):
// the executor checks it, under `mutex`, before every hand-over, so it never
// touches the thread-safe function after Node has destroyed it.
struct CompletionChannel {
  std::mutex mutex;
  bool open = true;
  Completions completions;
};

// Per-environment state: the completion channel, and the constructors of the
// classes the addon hands out.
struct AddonData {
  std::shared_ptr<CompletionChannel> channel;
  int pending_jobs = 0;  // submitted and not yet settled (JS thread only)
  Napi::FunctionReference tensor_constructor;
  Napi::FunctionReference module_constructor;
  Napi::FunctionReference trainer_constructor;
  Napi::FunctionReference process_group_constructor;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// The message of a C++ exception, without libtorch's C++ backtrace.
inline std::string describe(const std::exception& e) {
  if (auto* torch_error = dynamic_cast<const c10::Error*>(&e)) return torch_error->what_without_backtrace();
  return e.what();
}

// Runs `body`, turning every C++ exception into a JS Error: nothing crosses the
// boundary as a C++ exception, so bad input can never take the process down.
template <typename Body>
Napi::Value guarded(const Napi::Env& env, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;  // already a JS error (thrown below or by node-addon-api itself)
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, describe(e));
  } catch (...) {
    throw Napi::Error::New(env, "roformer-v2: unknown native error");
  }
}

[[noreturn]] inline void throw_type_error(const Napi::Env& env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

// ---------------------------------------------------------------------------
// Reading fields of JS option objects. A missing or undefined field gives the
// fallback; a field of the wrong type is a TypeError that names it as
// `where` + key, e.g. where = "config." (config.hidden_size), "trainer option "
// or "createProcessGroup: ".
// ---------------------------------------------------------------------------

inline bool has_field(const Napi::Object& object, const char* key) {
  return object.Has(key) && !object.Get(key).IsUndefined();
}

[[noreturn]] inline void throw_field_type_error(const Napi::Object& object, const char* key, const std::string& where,
                                                const std::string& expected, const std::string& got) {
  throw Napi::TypeError::New(object.Env(), where + key + " must be " + expected + ", got " + got);
}

inline double number_field(const Napi::Object& object, const char* key, double fallback, const std::string& where) {
  if (!has_field(object, key)) return fallback;
  Napi::Value value = object.Get(key);
  if (!value.IsNumber()) throw_field_type_error(object, key, where, "a number", value.ToString().Utf8Value());
  return value.As<Napi::Number>().DoubleValue();
}

inline int64_t integer_field(const Napi::Object& object, const char* key, int64_t fallback, const std::string& where) {
  const double value = number_field(object, key, static_cast<double>(fallback), where);
  if (value != static_cast<double>(static_cast<int64_t>(value))) {
    throw_field_type_error(object, key, where, "an integer", std::to_string(value));
  }
  return static_cast<int64_t>(value);
}

inline std::string string_field(const Napi::Object& object, const char* key, const std::string& fallback,
                                const std::string& where) {
  if (!has_field(object, key)) return fallback;
  Napi::Value value = object.Get(key);
  if (!value.IsString()) throw_field_type_error(object, key, where, "a string", value.ToString().Utf8Value());
  return value.As<Napi::String>().Utf8Value();
}

// JS truthiness, as `if (options.key)` reads it.
inline bool boolean_field(const Napi::Object& object, const char* key, bool fallback) {
  return has_field(object, key) ? object.Get(key).ToBoolean().Value() : fallback;
}

inline std::optional<bool> optional_boolean_field(const Napi::Object& object, const char* key) {
  if (!has_field(object, key)) return std::nullopt;
  return object.Get(key).ToBoolean().Value();
}

inline Napi::Object require_object(const Napi::Value& value, const std::string& what) {
  if (!value.IsObject()) throw Napi::TypeError::New(value.Env(), what + " must be an object");
  return value.As<Napi::Object>();
}

// Intra-op threads are a per-thread setting under OpenMP, so the executor
// thread applies the process-wide choice before it runs torch code (addon.cpp).
void apply_thread_settings();

// Parses "cpu", "cuda" or "cuda:N", and refuses CUDA clearly where it is not available.
torch::Device parse_device(const std::string& name);

// "float32", "bfloat16", ... ⇄ torch scalar types.
torch::ScalarType parse_dtype(const std::string& name);
using roformer::dtype_name;

// Hands `job` to the executor thread; its settle() runs on the JS thread once the
// job has run, in submission order. The environment's completion channel (one
// thread-safe function per environment, so completions keep their order) holds the
// event loop open only while jobs are pending, as libuv's own requests do.
void submit_job(Napi::Env env, Job* job);

// Runs `work` on the executor thread (executor.h) and settles a Promise with
// `done(env, result)` back on the JS thread. Any exception in either rejects the
// Promise with a JS Error. `settled`, if given, runs on the JS thread just before
// the Promise settles, either way.
template <typename Result>
class PromiseJob : public Job {
 public:
  using Work = std::function<Result()>;
  using Done = std::function<Napi::Value(Napi::Env, Result&)>;

  static Napi::Promise start(Napi::Env env, Work work, Done done, std::function<void()> settled = nullptr) {
    auto* job = new PromiseJob(env, std::move(work), std::move(done), std::move(settled));
    auto promise = job->deferred_.Promise();
    submit_job(env, job);  // deleted after settle()
    return promise;
  }

 private:
  PromiseJob(Napi::Env env, Work work, Done done, std::function<void()> settled)
      : deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)),
        settled_(std::move(settled)) {}

  void run() override {
    try {
      apply_thread_settings();
      result_ = work_();
    } catch (const std::exception& e) {
      error_ = describe(e);
      failed_ = true;
    } catch (...) {
      error_ = "roformer-v2: unknown native error";
      failed_ = true;
    }
    work_ = nullptr;  // release what the work captured (models, batches) on this thread, now
  }

  void settle(Napi::Env env) override {
    Napi::HandleScope scope(env);
    if (settled_) settled_();
    if (failed_) {
      deferred_.Reject(Napi::Error::New(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_(env, result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, describe(e)).Value());
    } catch (...) {
      deferred_.Reject(Napi::Error::New(env, "roformer-v2: unknown native error").Value());
    }
  }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::function<void()> settled_;
  Result result_{};
  bool failed_ = false;
  std::string error_;
};

// The executor jobs (forward passes, trainer steps) queued or running that use a
// model's weights, counted on the JS thread. While there are any, JS-thread methods
// that read or change the weights are refused (or, for train()/eval(), queued
// behind them), so they never block the event loop or see weights mid-update.
struct ModelUse {
  int jobs = 0;
  std::optional<bool> queued_training;  // the mode train()/eval() queued behind the jobs

  bool busy() const { return jobs > 0; }
  // For PromiseJob::start: counts the job in now, and out when it settles.
  std::function<void()> enter(const std::shared_ptr<ModelUse>& self) {
    ++jobs;
    return [self]() {
      if (--self->jobs == 0) self->queued_training.reset();
    };
  }
};

// Set while an object's exclusive job (a trainer's step, evaluation, ...) is in flight.
using BusyFlag = std::shared_ptr<std::atomic<bool>>;

// PromiseJob::start for work that must run alone on its object and uses a model's
// weights: refuses with `refusal` (an Error thrown now, on the JS thread) while
// `busy` is set; otherwise sets it, counts the job in `model_use`, and clears both
// on the JS thread when the Promise settles, either way, so JS never sees a
// finished-but-unsettled job as free. Exceptions in `work` or `done` reject the
// Promise with a JS Error, as for every PromiseJob.
template <typename Result>
Napi::Promise start_exclusive_job(Napi::Env env, const BusyFlag& busy, const std::string& refusal,
                                  const std::shared_ptr<ModelUse>& model_use, typename PromiseJob<Result>::Work work,
                                  typename PromiseJob<Result>::Done done) {
  bool expected = false;
  if (!busy->compare_exchange_strong(expected, true)) throw std::invalid_argument(refusal);
  auto model_done = model_use->enter(model_use);
  auto release = [busy, model_done]() {
    *busy = false;
    model_done();
  };
  try {
    return PromiseJob<Result>::start(env, std::move(work), std::move(done), release);
  } catch (...) {
    release();  // never submitted: nothing else will clear them
    throw;
  }
}

}  // namespace roformer::js
