// The native boundary: how C++ exceptions become JS Errors, how JS arguments are
// read and checked, and how heavy work runs off the JS thread as a Promise.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include "encoder_model.h"

#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

namespace roformer::js {

// Per-environment state: the constructors of the classes the addon hands out.
struct AddonData {
  Napi::FunctionReference tensor_constructor;
  Napi::FunctionReference module_constructor;
  Napi::FunctionReference trainer_constructor;
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

// Intra-op threads are a per-thread setting under OpenMP, so each libuv worker
// thread applies the process-wide choice before it runs torch code (addon.cpp).
void apply_thread_settings();

// Parses "cpu", "cuda" or "cuda:N", and refuses CUDA clearly where it is not available.
torch::Device parse_device(const std::string& name);

// "float32", "bfloat16", ... ⇄ torch scalar types.
torch::ScalarType parse_dtype(const std::string& name);
using roformer::dtype_name;

// Runs `work` on a libuv worker thread and settles a Promise with `done(env, result)`
// back on the JS thread. Any exception in either rejects the Promise with a JS Error.
// `settled`, if given, runs on the JS thread just before the Promise settles, either way.
template <typename Result>
class PromiseJob : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using Done = std::function<Napi::Value(Napi::Env, Result&)>;

  static Napi::Promise start(Napi::Env env, Work work, Done done, std::function<void()> settled = nullptr) {
    auto* job = new PromiseJob(env, std::move(work), std::move(done));
    job->settled_ = std::move(settled);
    auto promise = job->deferred_.Promise();
    job->Queue();  // deleted by node-addon-api once settled
    return promise;
  }

 private:
  PromiseJob(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env, "roformer-v2"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)) {}

  void Execute() override {
    try {
      apply_thread_settings();
      result_ = work_();
    } catch (const std::exception& e) {
      SetError(describe(e));
    } catch (...) {
      SetError("roformer-v2: unknown native error");
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (settled_) settled_();
    try {
      deferred_.Resolve(done_(env, result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, describe(e)).Value());
    }
  }

  void OnError(const Napi::Error& error) override {
    if (settled_) settled_();
    deferred_.Reject(error.Value());
  }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::function<void()> settled_;
  Result result_;
};

}  // namespace roformer::js
