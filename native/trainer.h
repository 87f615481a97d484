// One optimisation step of masked-language-model and multi-task training, as
// PyTorch users write it by hand, in one place:
//
//   for each task in the step (its micro-batches together):
//     for each micro-batch:  loss = task loss (MLM: CE at the targets / the task's targets;
//                                   heads: batch mean · examples / the task's examples)
//                            (loss · scale).backward()           under autocast
//     gradient normalisation: g = Σ g_task ("none"), Σ g_task / ‖g_task‖ ("unit"),
//                             or Σ α_task g_task with α minimising ‖Σ α g‖ on the simplex ("pareto")
//   unscale the gradients; if any is inf/NaN: skip, back off the loss scale
//   clip to the global norm; optimiser.step(lr); grow the loss scale when due
//
// Pure libtorch; trainer_handle.cpp runs it on a worker thread for JS.
#pragma once

#include "encoder_model.h"
#include "gradient_normalization.h"
#include "heads.h"
#include "optimizers.h"

#include <memory>
#include <mutex>
#include <limits>
#include <optional>

namespace roformer {

class CudaGraphSteps;
class Distributed;
class GradientReducer;

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
  // The static step (the base for CUDA graphs): the loss, gradient norm, found-inf flag,
  // clipping factor and learning rate stay tensors on the device, the update is skipped
  // there (AdamW's fused kernel, libtorch ≥ 2.4; otherwise the optimiser reads the flag),
  // and the step's figures are read back once, after the update is queued. Default: on
  // for CUDA, off for the CPU (where a read costs nothing and the foreach update is the
  // one the tests pin).
  std::optional<bool> static_step;
  // CUDA graphs (cuda_graph_step.h): each MLM step shape is recorded once as one graph of the
  // whole static step and replayed after. Default: on for CUDA with the static step and
  // without data parallelism; asking for it elsewhere is an error that says why.
  std::optional<bool> cuda_graphs;
  // Task heads by task name, trained with the encoder (empty: MLM only).
  std::vector<std::pair<std::string, HeadConfig>> heads;
  // How the tasks of one step combine their gradients (gradient_normalization.h).
  GradientNormalization gradient_normalization = GradientNormalization::none;
  // Data-parallel training (distributed.h): the step's gradients, losses and counts are
  // summed over the ranks, so every rank makes the same update; null: this process alone.
  std::shared_ptr<Distributed> distributed;
};

// The target id of an unused MLM target slot (cross-entropy's ignore_index, as in PyTorch).
constexpr int64_t kIgnoredTarget = -100;

// The MLM targets of a micro-batch: its target slots that are not kIgnoredTarget.
int64_t mlm_target_count(const torch::Tensor& target_ids);

// One micro-batch of one task: token ids plus that task's labels.
struct MicroBatch {
  std::string task;  // empty or "mlm": masked-language modelling; else a head's task name
  torch::Tensor input_ids, token_type_ids, attention_mask;
  // MLM targets at flat positions into batch·seq. A batch may hold a fixed number of
  // target slots (so the MLM head's shapes do not change from step to step): slots whose
  // id is kIgnoredTarget are not targets, and the loss leaves them out.
  torch::Tensor target_positions, target_ids;
  HeadTargets targets;                          // a head's labels
};

// One task's part of a step.
struct TaskStepResult {
  std::string task;
  double loss = 0;        // the task's loss (MLM: mean CE over its targets; heads: mean over examples)
  double grad_norm = std::numeric_limits<double>::quiet_NaN();  // ‖∇loss‖ (unscaled) when normalising
  double weight = 1;      // the factor its gradient entered the sum with
  int64_t examples = 0;   // MLM targets, or examples of a head
};

struct StepResult {
  double loss = 0;           // mean cross-entropy over all targets of the step
  double grad_norm = 0;      // global norm before clipping (unscaled); inf/NaN when skipped
  double loss_scale = 1;     // the scale used for this step
  bool skipped = false;      // inf/NaN: no update
  int64_t targets = 0;       // MLM targets in the step
  int64_t step = 0;          // optimiser updates so far
  int64_t skipped_steps = 0; // steps skipped so far
  std::vector<TaskStepResult> tasks;  // in order of first appearance in the step
  std::string cuda_graph;    // "captured" or "replayed" when it ran through a CUDA graph; empty: eagerly
};

// What a head predicts for one micro-batch (scores float32 on the host).
struct HeadPrediction {
  std::string task, kind;
  torch::Tensor scores;        // (batch, labels) | (examples, options) | (batch, labels, seq, seq), −inf where masked
  double loss = std::numeric_limits<double>::quiet_NaN();  // when the batch has labels
  torch::Tensor span_entries;  // span: (n, 4) int64 (example, label, start, end) where s > 0
  torch::Tensor span_scores;   // span: (n,) their scores
};

// The combined gradient of some micro-batches, without an update (tests, diagnostics).
struct GradientResult {
  NamedTensors gradients;  // by optimiser name ("heads.<task>.…" for heads), unscaled, before clipping
  std::vector<TaskStepResult> tasks;
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

  // A head's outputs for one micro-batch (eval mode, no gradients, no update).
  HeadPrediction predict(const MicroBatch& batch);

  // The step's combined gradient without updating; `normalization` overrides the option.
  GradientResult gradients(const std::vector<MicroBatch>& batches, double alpha, GradientNormalization normalization);

  // The heads: their configurations, and their weights by optimiser name.
  const std::vector<std::pair<std::string, HeadConfig>>& head_configs() const { return options_.heads; }
  NamedTensors head_parameters() const;
  // Strict: every missing, unexpected or mis-shaped tensor named in one error.
  void load_head_parameters(const std::map<std::string, torch::Tensor>& saved);

  // Optimiser moments plus the random generators' states ("rng.cpu", "rng.cuda:N").
  std::map<std::string, torch::Tensor> state_tensors() const;
  void load_state_tensors(const std::map<std::string, torch::Tensor>& saved);
  // The random generators' states alone ("rng.cpu", "rng.cuda:N"): data-parallel
  // checkpoints keep every rank's own.
  std::map<std::string, torch::Tensor> random_state() const;
  void load_random_state(const std::map<std::string, torch::Tensor>& saved);
  TrainerCounters counters() const;
  void set_counters(const TrainerCounters& counters);

  const TrainerOptions& options() const { return options_; }
  std::shared_ptr<EncoderModel> model() const { return model_; }

 private:
  // Sum of the cross-entropy at the targets (float32, whatever the autocast dtype).
  torch::Tensor mlm_loss_sum(const MicroBatch& batch, torch::Tensor* logits_out = nullptr);
  // A head's scores from the encoder's forward, under autocast as configured.
  torch::Tensor head_scores(TaskHead& head, const MicroBatch& batch);
  void check_batch(const MicroBatch& batch, bool training = true) const;
  // check_batch with the error prefixed by "microBatches[index] (task '…'): ".
  void check_batch_in(const MicroBatch& batch, size_t index) const;
  TaskHead* head_for(const MicroBatch& batch) const;  // nullptr for MLM
  // Under the model lock, before a training forward: device check, train mode (encoder
  // and heads), the residual scale α.
  void enter_training(double alpha);

  // Forward/backward of every task in `batches` (loss scale `scale`), leaving the
  // combined, unscaled gradient in .grad() of the step's parameters.
  // `sync`: data-parallel step (counts, tasks and gradients summed over the ranks).
  struct Accumulated {
    NamedTensors parameters;               // the encoder's and the step's heads'
    std::vector<torch::Tensor> gradients;  // their .grad(), combined
    std::vector<torch::Tensor> losses;     // per task, on the device
    std::vector<TaskStepResult> tasks;     // loss not yet filled in
  };
  Accumulated accumulate(const std::vector<MicroBatch>& batches, GradientNormalization normalization, double scale,
                         bool sync = false);
  // The .grad() of each of `parameters`, zeroed in place (created on the first step; those the
  // last update zeroed as it read them are left as they are), with the optimiser's q, k, v
  // gradients linked to them (link_unpacked_gradients).
  std::vector<torch::Tensor> zeroed_gradients(NamedTensors& parameters);
  // Points the .grad() of each q, k, v block the optimiser holds at its rows of the packed
  // gradient, which backward fills: the optimiser reads the blocks' gradients.
  void link_unpacked_gradients();
  // The steps of accumulate(). One task's micro-batches in a step, and how many MLM
  // targets or examples they hold (data-parallel: over all ranks).
  struct TaskGroup {
    std::string task;
    TaskHead* head;  // nullptr for MLM
    std::vector<const MicroBatch*> batches;
    int64_t count = 0;
  };
  // The step's tasks in order of first appearance, each with its micro-batches.
  std::vector<TaskGroup> group_by_task(const std::vector<MicroBatch>& batches) const;
  // Data-parallel: the tasks of any rank, in one order on every rank (MLM, then the
  // heads), each with its count over all ranks.
  std::vector<TaskGroup> agree_on_tasks(std::vector<TaskGroup> groups) const;
  // The encoder's parameters and those of the heads in `groups`; the other heads'
  // gradients are reset, so the optimiser leaves them (and their moments) untouched.
  NamedTensors step_parameters(const std::vector<TaskGroup>& groups) const;
  // Forward and backward of one task's micro-batches, its gradient accumulating in
  // .grad() (times `scale`); arms the data-parallel reducer before `arm_before`'s
  // backward. Returns the task's loss, on the device.
  torch::Tensor backward_task(const TaskGroup& group, double scale, const MicroBatch* arm_before);
  // Data-parallel: the same model on every rank (checked), rank 0's weights everywhere.
  void sync_parameters();
  void check_device() const;
  bool uses_loss_scaling() const;
  // The end of a step from its gradients: norm, skip, clipping, update, counters.
  // update_on_host: the figures read first, the decision made on the host; update_on_device:
  // the static step (TrainerOptions::static_step), the figures read once, last.
  void update_on_host(StepResult& result, const torch::Tensor& total_norm, const torch::Tensor& losses, double lr);
  void update_on_device(StepResult& result, const torch::Tensor& total_norm, const torch::Tensor& losses, double lr);
  // What the device update reads besides the gradients, written without waiting: the
  // learning rate (lr_) and the optimiser's step number.
  void write_update_inputs(double lr);
  // update_on_device's two halves: the device half queues the skip flag, the clipping and the
  // update (reading what write_update_inputs wrote) and returns the figures
  // [loss, norm, found_inf, task losses…] on the device, reading nothing back (a CUDA graph
  // captures it); the host half reads them from the host copy `summary` and counts the step.
  torch::Tensor queue_device_update(const torch::Tensor& total_norm, const torch::Tensor& losses);
  void finish_device_update(StepResult& result, const torch::Tensor& summary);
  // The step's figures (summed loss, norm, per-task losses) into `result`, from the host copy
  // `summary` = [loss, norm, task losses…] starting at `first_task`.
  static void read_figures(StepResult& result, const torch::Tensor& summary, int64_t first_task);
  // Counters after a step made (or skipped).
  void count_step(bool skipped);

  std::shared_ptr<EncoderModel> model_;
  // The heads, registered as "<task>" in one container: parameters "heads.<task>.…".
  std::shared_ptr<torch::nn::Module> heads_ = std::make_shared<torch::nn::Module>("TaskHeads");
  std::map<std::string, std::shared_ptr<TaskHead>> head_by_task_;
  std::shared_ptr<std::mutex> model_mutex_;
  TrainerOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  std::optional<torch::ScalarType> autocast_dtype_;
  // Where the weights were when the optimiser state was made: moving the model
  // afterwards would leave that state behind.
  torch::Device device_{torch::kCPU};
  TrainerCounters counters_;
  bool static_step_ = false;
  torch::Tensor lr_;  // static step: the learning rate, a 0-dim float32 on the device
  std::shared_ptr<GradientReducer> reducer_;  // data-parallel only
  // The CUDA-graph steps (cuda_graph_step.h; null without cudaGraphs). They run the
  // static step's parts above on their own buffers, hence the friendship.
  std::shared_ptr<CudaGraphSteps> graphs_;
  friend class CudaGraphSteps;
  bool synced_ = false;                       // weights broadcast from rank 0 yet
};

}  // namespace roformer
