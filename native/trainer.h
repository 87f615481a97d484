// One optimisation step of masked-language-model training, as PyTorch users
// write it by hand, in one place:
//
//   for each micro-batch:  loss_i = CE(mlm_logits(model(x_i))[targets], labels) / total targets
//                          (loss_i · scale).backward()           under autocast
//   unscale the gradients; if any is inf/NaN: skip, back off the loss scale
//   clip to the global norm; optimiser.step(lr); grow the loss scale when due
//
// Pure libtorch; trainer_handle.cpp runs it on a worker thread for JS.
#pragma once

#include "encoder_model.h"
#include "optimizers.h"

#include <memory>
#include <mutex>
#include <optional>

namespace roformer {

struct TrainerOptions {
  OptimizerOptions optimizer;
  // Global-norm gradient clipping; 0 turns it off.
  double max_grad_norm = 1.0;
  // "fp32", "bf16" (autocast) or "fp16" (autocast + dynamic loss scaling).
  std::string precision = "fp32";
  // Dynamic loss scaling; on by default for fp16, available for any precision.
  std::optional<bool> loss_scaling;
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

// One micro-batch: token ids and the MLM targets at flat positions into batch·seq.
struct MicroBatch {
  torch::Tensor input_ids, token_type_ids, attention_mask;
  torch::Tensor target_positions, target_ids;
};

struct StepResult {
  double loss = 0;           // mean cross-entropy over all targets of the step
  double grad_norm = 0;      // global norm before clipping (unscaled); inf/NaN when skipped
  double loss_scale = 1;     // the scale used for this step
  bool skipped = false;      // inf/NaN: no update
  int64_t targets = 0;       // MLM targets in the step
  int64_t step = 0;          // optimiser updates so far
  int64_t skipped_steps = 0; // steps skipped so far
};

// The trainer's scalar state, for checkpoints (tensors go through state_tensors()).
struct TrainerCounters {
  int64_t step = 0;
  int64_t skipped_steps = 0;
  double loss_scale = 1;
  int64_t growth_tracker = 0;
};

class Trainer {
 public:
  Trainer(std::shared_ptr<EncoderModel> model, std::shared_ptr<std::mutex> model_mutex, TrainerOptions options);

  // Runs one optimisation step over the micro-batches (gradient accumulation),
  // with learning rate lr and residual scale alpha.
  StepResult step(const std::vector<MicroBatch>& batches, double lr, double alpha);

  // Evaluation: summed MLM loss and correct predictions at the targets, no update.
  struct EvalResult {
    double loss_sum = 0;
    int64_t correct = 0;
    int64_t targets = 0;
  };
  EvalResult evaluate(const MicroBatch& batch);

  // Optimiser moments plus the random generators' states ("rng.cpu", "rng.cuda:N").
  std::map<std::string, torch::Tensor> state_tensors() const;
  void load_state_tensors(const std::map<std::string, torch::Tensor>& saved);
  TrainerCounters counters() const;
  void set_counters(const TrainerCounters& counters);

  const TrainerOptions& options() const { return options_; }
  std::shared_ptr<EncoderModel> model() const { return model_; }

 private:
  // Sum of the cross-entropy at the targets (float32, whatever the autocast dtype).
  torch::Tensor mlm_loss_sum(const MicroBatch& batch, torch::Tensor* logits_out = nullptr);
  void check_batch(const MicroBatch& batch) const;
  bool uses_loss_scaling() const;

  std::shared_ptr<EncoderModel> model_;
  std::shared_ptr<std::mutex> model_mutex_;
  TrainerOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  std::optional<torch::ScalarType> autocast_dtype_;
  // Where the weights were when the optimiser state was made: moving the model
  // afterwards would leave that state behind.
  torch::Device device_{torch::kCPU};
  TrainerCounters counters_;
};

}  // namespace roformer
