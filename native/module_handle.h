// The JS handle on a libtorch module: either a whole encoder (RoFormerV2 or the
// baseline) or one building block (rotary embedding, RMS norm, attention, block)
// exposed on its own so it can be used and tested directly.
#pragma once

#include "encoder_model.h"
#include "napi_util.h"

#include <memory>
#include <mutex>

namespace roformer::js {

class ModuleHandle : public Napi::ObjectWrap<ModuleHandle> {
 public:
  static Napi::Function define_class(Napi::Env env);

  // createModel(architecture, config, seed) and createLayer(kind, options, seed).
  static Napi::Value create_model(const Napi::CallbackInfo& info);
  static Napi::Value create_layer(const Napi::CallbackInfo& info);

  explicit ModuleHandle(const Napi::CallbackInfo& info);

  // For the trainer: the whole model behind a JS handle and the mutex that
  // serialises every use of its weights across threads (a TypeError if the value
  // is not a whole model).
  static std::pair<std::shared_ptr<EncoderModel>, std::shared_ptr<std::mutex>> unwrap_model(const Napi::Value& value,
                                                                                             const std::string& what);
  // The job count of the model behind `value` (checked by unwrap_model first).
  static std::shared_ptr<ModelUse> use_of(const Napi::Value& value);

 private:
  using LayerCall = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;
  static Napi::Object wrap(Napi::Env env, std::string kind, std::shared_ptr<torch::nn::Module> module,
                           std::shared_ptr<EncoderModel> model, LayerCall call);
  EncoderModel& model(const char* method) const;
  // Runs `compute` on the whole model on the executor thread, under the weights' mutex
  // and without gradients, as a job that uses the weights; resolves with its tensor.
  Napi::Value start_inference(Napi::Env env, std::function<torch::Tensor(EncoderModel&)> compute);
  // Throws a clear error after dispose() or, with `refuse_while_busy`, while jobs use the weights.
  void check_usable(const char* method, bool refuse_while_busy = false) const;

  Napi::Value kind(const Napi::CallbackInfo& info);
  Napi::Value config(const Napi::CallbackInfo& info);
  Napi::Value training(const Napi::CallbackInfo& info);
  Napi::Value parameter_count(const Napi::CallbackInfo& info);
  Napi::Value residual_scale(const Napi::CallbackInfo& info);
  Napi::Value set_residual_scale(const Napi::CallbackInfo& info);
  Napi::Value train(const Napi::CallbackInfo& info);
  Napi::Value to(const Napi::CallbackInfo& info);
  Napi::Value named_parameters(const Napi::CallbackInfo& info);
  Napi::Value load_state_dict(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value mlm_logits(const Napi::CallbackInfo& info);
  Napi::Value call(const Napi::CallbackInfo& info);
  Napi::Value vjp(const Napi::CallbackInfo& info);
  Napi::Value idle(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);

  std::string kind_;
  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<EncoderModel> model_;  // set for whole models
  LayerCall call_;                       // set for building blocks
  std::shared_ptr<std::mutex> mutex_ = std::make_shared<std::mutex>();
  std::shared_ptr<ModelUse> use_ = std::make_shared<ModelUse>();
  bool disposed_ = false;
};

}  // namespace roformer::js
