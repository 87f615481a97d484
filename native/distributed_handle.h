// The JS handle on a rank's process group (distributed.h): created by
// createProcessGroup(options) once every rank has joined; collectives return Promises
// and run on the executor thread, in order with the trainer's steps.
#pragma once

#include "distributed.h"
#include "napi_util.h"

#include <memory>

namespace roformer::js {

class ProcessGroupHandle : public Napi::ObjectWrap<ProcessGroupHandle> {
 public:
  static Napi::Function define_class(Napi::Env env);
  // createProcessGroup({ rank, worldSize, localRank?, masterAddr, masterPort, timeoutSeconds?, backend?, device? })
  static Napi::Value create(const Napi::CallbackInfo& info);
  // The process group of a NativeProcessGroup object (trainer option processGroup).
  static std::shared_ptr<Distributed> unwrap(const Napi::Value& value, const std::string& what);

  explicit ProcessGroupHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value rank(const Napi::CallbackInfo& info);
  Napi::Value world_size(const Napi::CallbackInfo& info);
  Napi::Value backend(const Napi::CallbackInfo& info);
  Napi::Value all_reduce(const Napi::CallbackInfo& info);
  Napi::Value all_gather(const Napi::CallbackInfo& info);
  Napi::Value barrier(const Napi::CallbackInfo& info);
  Napi::Value shutdown(const Napi::CallbackInfo& info);
  std::shared_ptr<Distributed> group(const char* method) const;

  std::shared_ptr<Distributed> distributed_;
};

}  // namespace roformer::js
