// The optimisers: AdamW (default), LAMB (the authors' pre-training choice) and
// Adafactor (their CLUE fine-tuning choice).
//
// Written here rather than taken from torch::optim because libtorch's C++ frontend
// has neither LAMB nor Adafactor, and because checkpoints need each optimiser's
// state as named tensors ("exp_avg.<parameter>", ...), saved next to the model in
// safetensors. The learning rate comes with every step: schedules live in TypeScript.
#pragma once

#include <torch/torch.h>

#include <map>
#include <unordered_map>
#include <utility>
#include <memory>
#include <string>
#include <vector>

namespace roformer {

struct OptimizerOptions {
  std::string kind = "adamw";  // adamw | lamb | adafactor
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // Adafactor (Shazeer & Stern 2018, as in Hugging Face's implementation with a given lr)
  double adafactor_eps1 = 1e-30;      // added to squared gradients
  double adafactor_eps2 = 1e-3;       // floor of the parameter scale
  double adafactor_clip = 1.0;        // update RMS clipping threshold
  double adafactor_decay_rate = -0.8;  // β2 at step t = 1 − t^decay_rate
  bool adafactor_scale_parameter = true;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class Optimizer {
 public:
  Optimizer(NamedTensors parameters, OptimizerOptions options);
  virtual ~Optimizer() = default;

  // One update from every parameter's .grad(), with learning rate lr. The default
  // walks the parameters one by one through update(); AdamW batches them instead.
  virtual void step(double lr);

  // The same update with every gradient multiplied by `multiplier` first (gradient clipping's
  // factor). The default multiplies the .grad() tensors in place, then steps; AdamW's one-pass
  // CPU update multiplies each gradient as it reads it and leaves .grad() as it was.
  virtual void step_clipped(double lr, double multiplier);

  // One update whose inputs stay tensors on the device (the trainer's static step): the
  // learning rate `lr`, the gradients multiplied by `clip` first (undefined: not clipped),
  // and no update at all where `found_inf` is non-zero (all three 0-dim float32). The
  // default reads found_inf and lr on the host, then steps as above; AdamW with the fused
  // kernel of libtorch ≥ 2.4 reads nothing back. Either way the caller sets steps() once
  // it has read whether the update was made.
  // Callers write the update's step number first (write_step_number()).
  virtual void step_on_device(const torch::Tensor& lr, const torch::Tensor& clip, const torch::Tensor& found_inf);

  // Whether step_on_device reads nothing back to the host and takes every value that changes
  // from step to step from a tensor, so that a CUDA graph can capture it (cuda_graph_step.cpp)
  // and replay it at every step. Its one host value, the step number the update would make,
  // is written to the device by write_step_number(), before it and outside any graph.
  virtual bool capturable() const { return false; }
  virtual void write_step_number() {}

  // The state as named tensors (created up front, so the key set never changes),
  // and its strict restoration from a checkpoint.
  const std::map<std::string, torch::Tensor>& state() const { return state_; }
  void load_state(const std::map<std::string, torch::Tensor>& saved);

  // The parameters it updates, by name, in the order given (views may need their .grad() set).
  NamedTensors& parameters() { return parameters_; }

  // With `on`, an update that can (AdamW's one-pass CPU update) also zeroes each gradient as it
  // reads it, while it is in cache, so that the trainer's next step need not zero them in a pass
  // of its own. Off by default: optimizerSteps and other callers keep their gradients.
  void set_zero_gradients(bool on) { zero_gradients_ = on; }
  // What the last update zeroed, by gradient storage: how many elements, and the storage's
  // version counter after (q, k and v's gradients are blocks of one packed storage). A gradient
  // covering that many elements of it, at that version, is still zero. Taken once (the record
  // is emptied); the next update makes a new one.
  struct Zeroed {
    int64_t elements = 0;
    int64_t version = 0;
  };
  using ZeroedGradients = std::unordered_map<const c10::StorageImpl*, Zeroed>;
  ZeroedGradients take_zeroed_gradients() { return std::exchange(zeroed_, {}); }

  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }
  const OptimizerOptions& options() const { return options_; }

 protected:
  // Update one parameter; `t` is the 1-based step number.
  virtual void update(const std::string& name, torch::Tensor& param, const torch::Tensor& grad, double lr, int64_t t) = 0;
  torch::Tensor& state(const std::string& key, const std::string& name) { return state_.at(key + "." + name); }
  void add_state(const std::string& key, const std::string& name, const torch::Tensor& like);
  // Adam's first and second moments ("exp_avg", "exp_avg_sq"), zero, for every parameter.
  void add_adam_moments();
  // Weight decay applies to matrices and embeddings, not to biases or norm gains.
  static bool decays(const torch::Tensor& param) { return param.dim() >= 2; }

  // The parameters' gradients, those that have one.
  std::vector<torch::Tensor> gradients() const;

  NamedTensors parameters_;
  OptimizerOptions options_;
  std::map<std::string, torch::Tensor> state_;
  int64_t steps_ = 0;
  bool zero_gradients_ = false;
  ZeroedGradients zeroed_;
};

std::unique_ptr<Optimizer> make_optimizer(NamedTensors parameters, const OptimizerOptions& options);

}  // namespace roformer
