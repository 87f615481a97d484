// The JS handle on a Trainer: steps and evaluations run on worker threads and
// return Promises; one step at a time.
#pragma once

#include "module_handle.h"
#include "napi_util.h"
#include "trainer.h"

#include <atomic>
#include <memory>

namespace roformer::js {

class TrainerHandle : public Napi::ObjectWrap<TrainerHandle> {
 public:
  static Napi::Function define_class(Napi::Env env);
  // createTrainer(model: NativeModule, options: object)
  static Napi::Value create(const Napi::CallbackInfo& info);
  // optimizerSteps(options, params, gradsPerStep[], lrs[]): the optimiser on its own,
  // updating `params` in place — lets tests check each update rule against reference math.
  static Napi::Value optimizer_steps(const Napi::CallbackInfo& info);

  // zlprLoss(scores, { targets?, positives?, valid? }): the ZLPR loss per row and its
  // gradient with respect to the scores — lets tests check the loss and its edge cases.
  static Napi::Value zlpr_loss(const Napi::CallbackInfo& info);

  explicit TrainerHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value step(const Napi::CallbackInfo& info);
  Napi::Value evaluate(const Napi::CallbackInfo& info);
  Napi::Value predict(const Napi::CallbackInfo& info);
  Napi::Value gradients(const Napi::CallbackInfo& info);
  Napi::Value heads(const Napi::CallbackInfo& info);
  Napi::Value head_parameters(const Napi::CallbackInfo& info);
  Napi::Value load_head_parameters(const Napi::CallbackInfo& info);
  Napi::Value state_tensors(const Napi::CallbackInfo& info);
  Napi::Value load_state_tensors(const Napi::CallbackInfo& info);
  Napi::Value random_state(const Napi::CallbackInfo& info);
  Napi::Value load_random_state(const Napi::CallbackInfo& info);
  Napi::Value counters(const Napi::CallbackInfo& info);
  Napi::Value set_counters(const Napi::CallbackInfo& info);
  Napi::Value busy(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  // The trainer, or a clear error after dispose().
  Trainer& trainer(const char* method) const;
  // The same, or a clear error while a step, evaluation or prediction is in flight.
  Trainer& idle_trainer(const char* method) const;
  // Runs `work` on the trainer on the executor thread as `method`: alone (a second
  // step, evaluation or prediction is refused until its Promise settles) and counted
  // as a job that uses the model's weights; `done` turns its result into JS.
  template <typename Result>
  Napi::Value start_job(Napi::Env env, const char* method, std::function<Result(Trainer&)> work,
                        typename PromiseJob<Result>::Done done);

  std::shared_ptr<Trainer> trainer_;
  // The trained model's job count: a step counts as a job that uses its weights.
  std::shared_ptr<ModelUse> model_use_;
  // A step or evaluation in flight: a second one is refused, never run concurrently.
  BusyFlag busy_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace roformer::js
