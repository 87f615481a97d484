// The JS Tensor: a handle on a torch::Tensor owned by the addon.
//
// Data crosses the boundary only when asked (toArray/toBuffer and the factories);
// everything else moves handles. dispose() frees the memory at once instead of
// waiting for the garbage collector; using a disposed tensor is a clear error.
#pragma once

#include "napi_util.h"

namespace roformer::js {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define_class(Napi::Env env);
  // Wraps a tensor in a new JS Tensor object.
  static Napi::Object wrap(Napi::Env env, torch::Tensor tensor);
  // The tensor behind a JS value; a TypeError names `what` if the value is not a
  // live Tensor. Null/undefined give an undefined tensor when `optional`.
  static torch::Tensor unwrap(const Napi::Value& value, const std::string& what, bool optional = false);

  // Factories exported to JS.
  static Napi::Value from_array(const Napi::CallbackInfo& info);
  static Napi::Value from_bytes(const Napi::CallbackInfo& info);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  const torch::Tensor& live(const char* method) const;
  void set(torch::Tensor tensor);
  void release();

  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value numel(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value to_array(const Napi::CallbackInfo& info);
  Napi::Value to_buffer(const Napi::CallbackInfo& info);
  Napi::Value to(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value to_string(const Napi::CallbackInfo& info);

  torch::Tensor tensor_;
  // Host bytes reported to V8 so the garbage collector feels the pressure of
  // memory it cannot see.
  int64_t external_bytes_ = 0;
  Napi::Env env_;
};

}  // namespace roformer::js
