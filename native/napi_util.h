// The native boundary: how C++ exceptions become JS Errors, how JS arguments are
// read and checked, and how heavy work runs off the JS thread as a Promise.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include "encoder_model.h"

#include <functional>
#include <memory>
#include <mutex>
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

// Settles a completed job on the JS thread and deletes it (napi_util.cpp: addon.cpp).
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

}  // namespace roformer::js
