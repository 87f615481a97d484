#include "trainer.h"

#include "compat.h"

#include <ATen/Context.h>

#include <cmath>
#include <stdexcept>

namespace roformer {

namespace {

torch::Device device_of(const torch::nn::Module& module) {
  auto params = module.parameters();
  return params.empty() ? torch::Device(torch::kCPU) : params.front().device();
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// Gradients are zeroed in place rather than freed: backward then accumulates into
// the same buffers every step, instead of allocating (and page-faulting in) a
// model-sized set of fresh ones, which costs more than the memset on the CPU.
void zero_grads(torch::nn::Module& module) {
  for (auto& p : module.parameters()) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
}

// Random generators whose state a checkpoint keeps: CPU, and every CUDA device.
std::vector<std::pair<std::string, at::Generator>> generators() {
  std::vector<std::pair<std::string, at::Generator>> result{{"rng.cpu", at::detail::getDefaultCPUGenerator()}};
  if (torch::cuda::is_available()) {
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
      torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
      result.emplace_back("rng." + device.str(), at::globalContext().defaultGenerator(device));
    }
  }
  return result;
}

}  // namespace

Trainer::Trainer(std::shared_ptr<EncoderModel> model, std::shared_ptr<std::mutex> model_mutex, TrainerOptions options)
    : model_(std::move(model)), model_mutex_(std::move(model_mutex)), options_(std::move(options)) {
  const auto device = device_of(*model_);
  device_ = device;
  if (options_.precision == "bf16") {
    autocast_dtype_ = torch::kBFloat16;
  } else if (options_.precision == "fp16") {
    require(device.is_cuda(), "precision fp16 needs a CUDA device (autocast to float16 is CUDA-only here); "
                              "use bf16 on CPU");
    autocast_dtype_ = torch::kHalf;
  } else {
    require(options_.precision == "fp32", "unknown precision '" + options_.precision + "': use fp32, bf16 or fp16");
  }
  require(options_.max_grad_norm >= 0, "max_grad_norm must be >= 0 (0 turns clipping off)");
  require(options_.init_scale > 0 && options_.growth_factor > 1 && options_.backoff_factor > 0 &&
              options_.backoff_factor < 1 && options_.growth_interval > 0,
          "loss scaling needs init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0");

  NamedTensors parameters;
  for (const auto& item : model_->named_parameters()) {
    // Mixed precision keeps fp32 master weights: autocast casts copies for the matmuls.
    require(item.value().scalar_type() == torch::kFloat,
            "parameter " + item.key() + " is " + dtype_name(item.value().scalar_type()) +
                ": train with float32 weights and choose precision bf16/fp16 for mixed precision");
    parameters.emplace_back(item.key(), item.value());
  }
  optimizer_ = make_optimizer(std::move(parameters), options_.optimizer);
  counters_.loss_scale = uses_loss_scaling() ? options_.init_scale : 1.0;
}

bool Trainer::uses_loss_scaling() const { return options_.loss_scaling.value_or(options_.precision == "fp16"); }

void Trainer::check_batch(const MicroBatch& b) const {
  require(b.target_positions.defined() && b.target_ids.defined(), "a micro-batch needs targetPositions and targetIds");
  for (const auto* t : {&b.target_positions, &b.target_ids}) {
    require(t->scalar_type() == torch::kLong || t->scalar_type() == torch::kInt,
            "targetPositions and targetIds must be int32 or int64, got " + dtype_name(t->scalar_type()));
    require(t->dim() == 1, "targetPositions and targetIds must be 1-D");
  }
  require(b.target_positions.numel() == b.target_ids.numel(),
          "targetPositions has " + std::to_string(b.target_positions.numel()) + " entries but targetIds has " +
              std::to_string(b.target_ids.numel()));
  require(b.target_ids.numel() > 0, "a micro-batch has no MLM targets");
  auto [lo, hi] = torch::aminmax(b.target_ids);
  const int64_t min_id = lo.item<int64_t>(), max_id = hi.item<int64_t>();
  const int64_t vocab = model_->config().vocab_size;
  require(min_id >= 0 && max_id < vocab, "targetIds must be in [0, vocab_size = " + std::to_string(vocab) +
                                             "), got " + std::to_string(min_id < 0 ? min_id : max_id));
}

torch::Tensor Trainer::mlm_loss_sum(const MicroBatch& b, torch::Tensor* logits_out) {
  // Inputs stay where they are: the model checks ids on the host and moves them itself.
  const auto device = device_of(*model_);
  std::optional<compat::AutocastGuard> autocast;
  if (autocast_dtype_) autocast.emplace(device, *autocast_dtype_);
  auto hidden = model_->forward(b.input_ids, b.token_type_ids, b.attention_mask);
  auto logits = model_->mlm_logits(hidden, b.target_positions).to(torch::kFloat);
  if (logits_out) *logits_out = logits;
  return torch::nn::functional::cross_entropy(
      logits, b.target_ids.to(device, torch::kLong, /*non_blocking=*/true),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

StepResult Trainer::step(const std::vector<MicroBatch>& batches, double lr, double alpha) {
  require(!batches.empty(), "step() needs at least one micro-batch");
  require(std::isfinite(lr) && lr >= 0, "the learning rate must be a finite number >= 0");
  require(alpha >= 0 && alpha <= 1, "the residual scale alpha must be in [0, 1]");
  for (const auto& b : batches) check_batch(b);

  std::lock_guard<std::mutex> lock(*model_mutex_);
  for (const auto& p : model_->parameters()) {
    if (p.device() != device_ || p.scalar_type() != torch::kFloat) {
      throw std::invalid_argument("the model was moved to " + p.device().str() + " / " + dtype_name(p.scalar_type()) +
                                  " after this Trainer was created for " + device_.str() +
                                  " / float32: create the Trainer after model.to()");
    }
    break;  // one parameter tells: Module::to moves them all
  }
  model_->train(true);
  model_->set_residual_scale(alpha);
  zero_grads(*model_);

  int64_t total_targets = 0;
  for (const auto& b : batches) total_targets += b.target_ids.numel();
  const double scale = counters_.loss_scale;

  // Forward and backward per micro-batch; the gradients accumulate in .grad().
  torch::Tensor loss_total = torch::zeros({}, torch::TensorOptions().device(device_of(*model_)));
  for (const auto& b : batches) {
    auto loss = mlm_loss_sum(b) / static_cast<double>(total_targets);
    (scale == 1.0 ? loss : loss * scale).backward();
    loss_total += loss.detach();
  }

  // Unscale, then the global norm (inf/NaN in any gradient makes it inf/NaN).
  std::vector<torch::Tensor> grads;
  for (auto& p : model_->parameters()) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  torch::NoGradGuard no_grad;
  if (scale != 1.0 && !grads.empty()) at::_foreach_mul_(grads, 1.0 / scale);
  std::vector<torch::Tensor> norms;
  for (const auto& g : grads) norms.push_back(g.norm(2).to(torch::kFloat));
  auto total_norm = norms.empty() ? torch::zeros_like(loss_total) : torch::stack(norms).norm(2);

  // The step's one host synchronisation: loss and norm decide whether to update.
  auto summary = torch::stack({loss_total.to(torch::kFloat), total_norm}).to(torch::kCPU);
  StepResult result;
  result.loss = summary[0].item<double>();
  result.grad_norm = summary[1].item<double>();
  result.loss_scale = scale;
  result.targets = total_targets;

  if (!std::isfinite(result.loss) || !std::isfinite(result.grad_norm)) {
    // Skip: weights and optimiser state stay as they were.
    result.skipped = true;
    counters_.skipped_steps++;
    if (uses_loss_scaling()) {
      counters_.loss_scale *= options_.backoff_factor;
      counters_.growth_tracker = 0;
    }
  } else {
    if (options_.max_grad_norm > 0 && result.grad_norm > options_.max_grad_norm) {
      at::_foreach_mul_(grads, options_.max_grad_norm / (result.grad_norm + 1e-6));
    }
    optimizer_->step(lr);
    counters_.step++;
    if (uses_loss_scaling() && ++counters_.growth_tracker >= options_.growth_interval) {
      counters_.loss_scale *= options_.growth_factor;
      counters_.growth_tracker = 0;
    }
  }
  zero_grads(*model_);
  result.step = counters_.step;
  result.skipped_steps = counters_.skipped_steps;
  return result;
}

Trainer::EvalResult Trainer::evaluate(const MicroBatch& batch) {
  check_batch(batch);
  std::lock_guard<std::mutex> lock(*model_mutex_);
  const bool was_training = model_->is_training();
  model_->train(false);
  torch::NoGradGuard no_grad;
  torch::Tensor logits;
  auto loss_sum = mlm_loss_sum(batch, &logits);
  auto correct = logits.argmax(-1).eq(batch.target_ids.to(logits.device()).to(torch::kLong)).sum();
  auto summary = torch::stack({loss_sum.to(torch::kDouble), correct.to(torch::kDouble)}).to(torch::kCPU);
  model_->train(was_training);
  return {summary[0].item<double>(), static_cast<int64_t>(summary[1].item<double>()), batch.target_ids.numel()};
}

std::map<std::string, torch::Tensor> Trainer::state_tensors() const {
  std::map<std::string, torch::Tensor> result;
  for (const auto& [key, tensor] : optimizer_->state()) result[key] = tensor.detach().clone();
  for (auto& [key, generator] : generators()) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    result[key] = generator.get_state();
  }
  return result;
}

void Trainer::load_state_tensors(const std::map<std::string, torch::Tensor>& saved) {
  std::map<std::string, torch::Tensor> optimizer_state;
  for (const auto& [key, tensor] : saved) {
    if (key.rfind("rng.", 0) != 0) optimizer_state[key] = tensor;
  }
  std::lock_guard<std::mutex> lock(*model_mutex_);
  // Check the generator states first: nothing changes unless everything can.
  auto gens = generators();
  for (auto& [key, generator] : gens) {
    auto it = saved.find(key);
    if (it == saved.end()) continue;  // e.g. a CPU checkpoint resumed on a GPU machine
    std::lock_guard<std::mutex> generator_lock(generator.mutex());
    const auto current = generator.get_state();
    require(it->second.scalar_type() == torch::kByte && it->second.sizes() == current.sizes(),
            "random generator state " + key + " has the wrong size or dtype");
  }
  optimizer_->load_state(optimizer_state);
  for (auto& [key, generator] : gens) {
    auto it = saved.find(key);
    if (it == saved.end()) continue;
    std::lock_guard<std::mutex> generator_lock(generator.mutex());
    generator.set_state(it->second);
  }
}

TrainerCounters Trainer::counters() const { return counters_; }

void Trainer::set_counters(const TrainerCounters& counters) {
  require(counters.step >= 0 && counters.skipped_steps >= 0 && counters.loss_scale > 0 && counters.growth_tracker >= 0,
          "invalid trainer counters");
  counters_ = counters;
  optimizer_->set_steps(counters.step);
}

}  // namespace roformer
