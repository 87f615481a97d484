#include "trainer.h"

#include "compat.h"
#include "compute_weight.h"
#include "cuda_graph_step.h"
#include "distributed.h"
#include "env_switch.h"
#include "op_count.h"
#include "packed_qkv.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace roformer {

namespace {

torch::Device device_of(const torch::nn::Module& module) {
  auto params = module.parameters();
  return params.empty() ? torch::Device(torch::kCPU) : params.front().device();
}

bool has_labels(const HeadTargets& t) { return t.labels.defined() || t.span_labels.defined() || t.span_targets.defined(); }

}  // namespace

int64_t mlm_target_count(const torch::Tensor& target_ids) {
  // JS hands the targets over on the host: counting them there costs no device round trip.
  return target_ids.to(torch::kCPU).ne(kIgnoredTarget).sum().item<int64_t>();
}

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

  // The optimiser sees q, k and v apart (packed_qkv.h): its per-tensor rules (LAMB's trust
  // ratio, Adafactor's factored moments) and its state's names stay those of three tensors.
  NamedTensors parameters;
  for (const auto& [name, tensor] : public_parameters(*model_)) {
    // Mixed precision keeps fp32 master weights: autocast casts copies for the matmuls.
    require(tensor.scalar_type() == torch::kFloat,
            "parameter " + name + " is " + dtype_name(tensor.scalar_type()) +
                ": train with float32 weights and choose precision bf16/fp16 for mixed precision");
    parameters.emplace_back(name, tensor);
  }
  // The heads, on the encoder's device; every parameter of theirs is in the optimiser too.
  for (const auto& [task, config] : options_.heads) {
    require(!task.empty() && task != "mlm" && task.find('.') == std::string::npos,
            "head name '" + task + "' is not usable: a task name is non-empty, has no '.', and is not 'mlm'");
    require(!head_by_task_.count(task), "two heads are named '" + task + "'");
    auto head = make_head(config, model_->config());
    heads_->register_module(task, head);
    head->to(device);
    head_by_task_[task] = head;
  }
  for (const auto& item : heads_->named_parameters()) parameters.emplace_back("heads." + item.key(), item.value());
  if (options_.distributed) {
    // The reducer hooks the autograd leaves: the packed weights, not their q, k, v views.
    std::vector<torch::Tensor> all = model_->parameters();
    for (const auto& p : heads_->parameters()) all.push_back(p);
    reducer_ = std::make_shared<GradientReducer>(options_.distributed, std::move(all));
  }
  optimizer_ = make_optimizer(std::move(parameters), options_.optimizer);
  counters_.loss_scale = uses_loss_scaling() ? options_.init_scale : 1.0;
  static_step_ = options_.static_step.value_or(device.is_cuda());
  lr_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device));
  if (cuda_graphs_wanted(options_, device, static_step_, *optimizer_)) graphs_ = make_cuda_graph_steps(*this);
}

bool Trainer::uses_loss_scaling() const { return options_.loss_scaling.value_or(options_.precision == "fp16"); }

void Trainer::check_batch_in(const MicroBatch& b, size_t index) const {
  try {
    check_batch(b);
  } catch (const std::invalid_argument& e) {
    const std::string task = b.task.empty() ? "" : " (task '" + b.task + "')";
    throw std::invalid_argument("microBatches[" + std::to_string(index) + "]" + task + ": " + e.what());
  }
}

TaskHead* Trainer::head_for(const MicroBatch& b) const {
  if (b.task.empty() || b.task == "mlm") return nullptr;
  auto it = head_by_task_.find(b.task);
  if (it == head_by_task_.end()) {
    std::string known = "mlm";
    for (const auto& [task, config] : options_.heads) known += ", " + task;
    throw std::invalid_argument("task: unknown task '" + b.task + "'; this trainer has " + known);
  }
  return it->second.get();
}

void Trainer::check_batch(const MicroBatch& b, bool training) const {
  if (auto* head = head_for(b)) {
    const auto& ids = b.input_ids;
    require(ids.defined() && ids.dim() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
            "inputIds must be a non-empty (batch, seq) tensor");
    require(!b.attention_mask.defined() || b.attention_mask.sizes() == ids.sizes(),
            "attentionMask must have the shape of inputIds");
    auto real = b.attention_mask.defined() ? b.attention_mask.to(torch::kCPU).ne(0)
                                           : ids.to(torch::kCPU).ne(model_->config().pad_token_id);
    head->check(b.targets, real, training);
    return;
  }
  require(b.target_positions.defined() && b.target_ids.defined(), "a micro-batch needs targetPositions and targetIds");
  for (const auto* t : {&b.target_positions, &b.target_ids}) {
    require(t->scalar_type() == torch::kLong || t->scalar_type() == torch::kInt,
            "targetPositions and targetIds must be int32 or int64, got " + dtype_name(t->scalar_type()));
    require(t->dim() == 1, "targetPositions and targetIds must be 1-D");
  }
  require(b.target_positions.numel() == b.target_ids.numel(),
          "targetPositions has " + std::to_string(b.target_positions.numel()) + " entries but targetIds has " +
              std::to_string(b.target_ids.numel()));
  const auto ids = b.target_ids.to(torch::kCPU, torch::kLong);
  const auto used = ids.ne(kIgnoredTarget);
  require(used.any().item<bool>(), "a micro-batch has no MLM targets");
  auto [lo, hi] = torch::aminmax(ids.masked_select(used));
  const int64_t min_id = lo.item<int64_t>(), max_id = hi.item<int64_t>();
  const int64_t vocab = model_->config().vocab_size;
  require(min_id >= 0 && max_id < vocab, "targetIds must be in [0, vocab_size = " + std::to_string(vocab) +
                                             ") or " + std::to_string(kIgnoredTarget) + " (an unused slot), got " +
                                             std::to_string(min_id < 0 ? min_id : max_id));
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
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum).ignore_index(kIgnoredTarget));
}

torch::Tensor Trainer::head_scores(TaskHead& head, const MicroBatch& b) {
  const auto device = device_of(*model_);
  std::optional<compat::AutocastGuard> autocast;
  if (autocast_dtype_) autocast.emplace(device, *autocast_dtype_);
  auto hidden = model_->forward(b.input_ids, b.token_type_ids, b.attention_mask);
  auto mask = b.attention_mask.defined() ? b.attention_mask : b.input_ids.ne(model_->config().pad_token_id);
  return head.scores(hidden, mask, b.targets);
}

void Trainer::check_device() const {
  for (const auto& p : model_->parameters()) {
    if (p.device() != device_ || p.scalar_type() != torch::kFloat) {
      throw std::invalid_argument("the model was moved to " + p.device().str() + " / " + dtype_name(p.scalar_type()) +
                                  " after this Trainer was created for " + device_.str() +
                                  " / float32: create the Trainer after model.to()");
    }
    break;  // one parameter tells: Module::to moves them all
  }
}

void Trainer::enter_training(double alpha) {
  check_device();
  model_->train(true);
  heads_->train(true);
  model_->set_residual_scale(alpha);
}

void Trainer::sync_parameters() {
  std::vector<torch::Tensor> all;
  double numel = 0;
  for (const auto& p : model_->parameters()) all.push_back(p);
  for (const auto& p : heads_->parameters()) all.push_back(p);
  for (const auto& p : all) numel += static_cast<double>(p.numel());
  const std::vector<double> shape{static_cast<double>(all.size()), numel};
  const auto lo = options_.distributed->all_reduce(shape, "min"), hi = options_.distributed->all_reduce(shape, "max");
  if (lo != hi) {
    std::ostringstream out;
    out << "the ranks' models differ (between " << lo[0] << " and " << hi[0] << " tensors, " << lo[1] << " and " << hi[1]
        << " weights): every rank must build the same model and heads";
    throw std::invalid_argument(out.str());
  }
  options_.distributed->broadcast_(all, 0);
  synced_ = true;
}

std::vector<Trainer::TaskGroup> Trainer::group_by_task(const std::vector<MicroBatch>& batches) const {
  std::vector<TaskGroup> groups;
  for (const auto& b : batches) {
    auto* head = head_for(b);
    const std::string task = head ? b.task : "mlm";
    auto it = std::find_if(groups.begin(), groups.end(), [&](const TaskGroup& g) { return g.task == task; });
    if (it == groups.end()) it = groups.insert(groups.end(), TaskGroup{task, head, {}, 0});
    it->batches.push_back(&b);
    it->count += head ? head->examples(b.targets, b.input_ids.size(0)) : mlm_target_count(b.target_ids);
  }
  return groups;
}

std::vector<Trainer::TaskGroup> Trainer::agree_on_tasks(std::vector<TaskGroup> groups) const {
  // Each task's targets / examples over all ranks, so that every rank's losses are
  // shares of the global mean and the summed gradients are the global step's.
  std::vector<double> counts(1 + options_.heads.size(), 0.0);
  auto index_of = [&](const std::string& task) -> size_t {
    for (size_t t = 0; t < options_.heads.size(); ++t) {
      if (options_.heads[t].first == task) return t + 1;
    }
    return 0;
  };
  for (const auto& g : groups) counts[index_of(g.task)] += static_cast<double>(g.count);
  const auto global = options_.distributed->all_reduce(counts, "sum");
  std::vector<TaskGroup> canonical;
  for (size_t t = 0; t < global.size(); ++t) {
    if (global[t] <= 0) continue;
    const std::string task = t == 0 ? "mlm" : options_.heads[t - 1].first;
    auto it = std::find_if(groups.begin(), groups.end(), [&](const TaskGroup& g) { return g.task == task; });
    // A task only other ranks have: this rank joins its collectives with no micro-batches.
    TaskGroup group = it != groups.end() ? *it : TaskGroup{task, t == 0 ? nullptr : head_by_task_.at(task).get(), {}, 0};
    group.count = static_cast<int64_t>(global[t]);
    canonical.push_back(std::move(group));
  }
  return canonical;
}

NamedTensors Trainer::step_parameters(const std::vector<TaskGroup>& groups) const {
  NamedTensors parameters;
  for (const auto& item : model_->named_parameters()) parameters.emplace_back(item.key(), item.value());
  for (const auto& [task, head] : head_by_task_) {
    const bool in_step = std::any_of(groups.begin(), groups.end(), [&](const TaskGroup& g) { return g.task == task; });
    for (const auto& item : head->named_parameters()) {
      if (in_step) {
        parameters.emplace_back("heads." + task + "." + item.key(), item.value());
      } else {
        item.value().mutable_grad().reset();
      }
    }
  }
  return parameters;
}

namespace {

// Undoes the loss scale on the accumulated gradients.
void unscale(std::vector<torch::Tensor>& grads, double scale) {
  torch::NoGradGuard no_grad;
  if (scale != 1.0) at::_foreach_mul_(grads, 1.0 / scale);
}

}  // namespace

torch::Tensor Trainer::backward_task(const TaskGroup& group, double scale, const MicroBatch* arm_before) {
  torch::Tensor task_loss = torch::zeros({}, torch::TensorOptions().device(device_));
  for (const auto* b : group.batches) {
    torch::Tensor loss;
    if (group.head) {
      // The batch mean, weighted by its share of the task's examples in this step.
      const double share = static_cast<double>(group.head->examples(b->targets, b->input_ids.size(0))) /
                           static_cast<double>(group.count);
      loss = group.head->loss(head_scores(*group.head, *b), b->targets) * share;
    } else {
      loss = mlm_loss_sum(*b) / static_cast<double>(group.count);
    }
    if (b == arm_before) reducer_->arm();
    (scale == 1.0 ? loss : loss * scale).backward();
    task_loss += loss.detach();
  }
  return task_loss;
}

namespace {

// Whether `grad` is still as the last update left it, zeroed (Optimizer::take_zeroed_gradients):
// all of its storage zeroed, its version unchanged since.
bool left_zero(const torch::Tensor& grad, const Optimizer::ZeroedGradients& zeroed) {
  const auto it = zeroed.find(grad.storage().unsafeGetStorageImpl());
  return it != zeroed.end() && grad.is_contiguous() &&
         grad.storage().nbytes() == static_cast<size_t>(grad.numel()) * grad.element_size() &&
         it->second.elements == grad.numel() && it->second.version == static_cast<int64_t>(grad._version());
}

}  // namespace

// In place rather than freed: backward then accumulates into the same buffers every step
// instead of allocating (and page-faulting in) a model-sized set of fresh ones, which costs
// more than the memset on the CPU — and a CUDA graph writes into the same buffers each replay.
std::vector<torch::Tensor> Trainer::zeroed_gradients(NamedTensors& parameters) {
  std::vector<torch::Tensor> grads, existing;
  // what the last update zeroed as it read it needs no second pass (taken once: a failed step
  // between then and now leaves nothing to trust)
  const auto zeroed = optimizer_->take_zeroed_gradients();
  for (auto& [name, p] : parameters) {
    if (p.grad().defined()) {
      if (!left_zero(p.grad(), zeroed)) existing.push_back(p.grad());
    } else {
      p.mutable_grad() = torch::zeros_like(p);  // the first step: allocated once
    }
    grads.push_back(p.grad());
  }
  {
    torch::NoGradGuard no_grad;
    if (!existing.empty()) at::_foreach_zero_(existing);  // one multi-tensor call
  }
  link_unpacked_gradients();
  return grads;
}

void Trainer::link_unpacked_gradients() {
  NamedTensors grads;
  for (const auto& item : model_->named_parameters()) grads.emplace_back(item.key(), item.value().grad());
  const auto unpacked = unpack_qkv(grads);
  // The optimiser holds the encoder's parameters first, in this order (the constructor).
  auto& held = optimizer_->parameters();
  for (size_t i = 0; i < unpacked.size(); ++i) {
    require(i < held.size() && held[i].first == unpacked[i].first,
            "internal: the encoder's gradients do not match the optimiser's parameters at " + unpacked[i].first);
    auto& p = held[i].second;
    // Unpacked tensors pass through as themselves (their .grad() already is this one).
    if (!p.grad().defined() || !p.grad().is_same(unpacked[i].second)) p.mutable_grad() = unpacked[i].second;
  }
}

Trainer::Accumulated Trainer::accumulate(const std::vector<MicroBatch>& batches, GradientNormalization normalization,
                                          double scale, bool sync) {
  auto groups = group_by_task(batches);
  if (sync) groups = agree_on_tasks(std::move(groups));
  Accumulated out;
  out.parameters = step_parameters(groups);
  auto grads = zeroed_gradients(out.parameters);
  // Mixed precision: every weight that autocast casts is cast once for all of the step's
  // forwards, the casts dropped on return, before any update (compat.h). The linear layers'
  // weights are cast by compute::weight instead (once per forward), and their gradients added
  // into .grad by one kernel each, except where data parallelism's reducer waits for
  // AccumulateGrad's hooks (compute_weight.h).
  compat::AutocastCacheScope cast_once_per_step;
  compute::DirectGradients direct(reducer_ == nullptr && compute::direct_gradients_wanted());
  auto task_result = [](const TaskGroup& group) {
    TaskStepResult task{group.task};
    task.examples = group.count;
    return task;
  };

  // Data-parallel: the gradients are all-reduced during the step's last backward, or, when
  // each task's gradient is normalised, during each task's last backward: a task's norm
  // is that of its gradient over every rank's examples, as with one rank and the whole batch.
  if (normalization == GradientNormalization::none) {
    // Every task's gradient accumulates into the same sum.
    const MicroBatch* last_batch = nullptr;
    for (const auto& g : groups) {
      if (sync && !g.batches.empty()) last_batch = g.batches.back();
    }
    for (const auto& group : groups) {
      out.losses.push_back(backward_task(group, scale, last_batch));
      out.tasks.push_back(task_result(group));
    }
    if (sync) reducer_->finish();
    unscale(grads, scale);
  } else {
    // Each task's gradient on its own in .grad(), then weighed into the combination.
    TaskGradientCombiner combiner(normalization);
    for (size_t i = 0; i < groups.size(); ++i) {
      const auto& group = groups[i];
      if (i > 0) {
        torch::NoGradGuard no_grad;
        at::_foreach_zero_(grads);
      }
      out.losses.push_back(backward_task(group, scale, sync && !group.batches.empty() ? group.batches.back() : nullptr));
      if (sync) {
        if (group.batches.empty()) reducer_->arm();  // none of the task's examples here: this rank adds zeros
        reducer_->finish();
      }
      unscale(grads, scale);
      auto task = task_result(group);
      {
        torch::NoGradGuard no_grad;
        task.grad_norm = global_norm(grads).item<double>();
      }
      task.weight = combiner.add_task(grads, task.grad_norm);
      out.tasks.push_back(task);
    }
    const auto weights = combiner.combine_into(grads);
    for (size_t i = 0; i < weights.size(); ++i) out.tasks[i].weight = weights[i];
  }
  out.gradients = grads;
  return out;
}

StepResult Trainer::step(const std::vector<MicroBatch>& batches, double lr, double alpha) {
  require(!batches.empty(), "step() needs at least one micro-batch");
  require(std::isfinite(lr) && lr >= 0, "the learning rate must be a finite number >= 0");
  require(alpha >= 0 && alpha <= 1, "the residual scale alpha must be in [0, 1]");
  for (size_t i = 0; i < batches.size(); ++i) check_batch_in(batches[i], i);

  std::lock_guard<std::mutex> lock(*model_mutex_);
  enter_training(alpha);
  // A step whose shapes have a CUDA graph replays it; the others run eagerly below.
  if (graphs_) {
    if (auto replayed = cuda_graph_step(*graphs_, batches, lr, alpha)) return std::move(*replayed);
  }

  const bool sync = options_.distributed != nullptr;
  if (sync && !synced_) sync_parameters();
  const double scale = counters_.loss_scale;
  std::optional<op_count::Phase> phase(std::in_place, "forward and backward");
  auto acc = accumulate(batches, options_.gradient_normalization, scale, sync);
  auto& grads = acc.gradients;

  // The global norm of the combined gradient (inf/NaN in any gradient makes it inf/NaN).
  phase.reset();
  op_count::Phase update("update");
  torch::NoGradGuard no_grad;
  auto total_norm = global_norm(grads);
  auto losses = torch::stack(acc.losses).to(torch::kFloat);
  if (sync) options_.distributed->all_reduce_(losses, "sum");  // every rank's share of each task's loss

  StepResult result;
  result.loss_scale = scale;
  result.tasks = std::move(acc.tasks);
  for (const auto& task : result.tasks) {
    if (task.task == "mlm") result.targets += task.examples;
  }
  if (static_step_) {
    update_on_device(result, total_norm, losses, lr);
  } else {
    update_on_host(result, total_norm, losses, lr);
  }
  // The gradients are left as they are (PyTorch's optimiser.step() without zero_grad()): the next
  // step's accumulate() zeroes the ones it uses, and a second pass over a model-sized set of
  // buffers here cost ~7 ms a step on the CPU (small model).
  result.step = counters_.step;
  result.skipped_steps = counters_.skipped_steps;
  return result;
}

void Trainer::read_figures(StepResult& result, const torch::Tensor& summary, int64_t first_task) {
  result.loss = summary[0].item<double>();
  result.grad_norm = summary[1].item<double>();
  for (size_t i = 0; i < result.tasks.size(); ++i) {
    result.tasks[i].loss = summary[static_cast<int64_t>(i) + first_task].item<double>();
  }
}

void Trainer::count_step(bool skipped) {
  if (skipped) {
    // Skip: weights and optimiser state stay as they were.
    counters_.skipped_steps++;
    if (uses_loss_scaling()) {
      counters_.loss_scale *= options_.backoff_factor;
      counters_.growth_tracker = 0;
    }
    return;
  }
  counters_.step++;
  if (uses_loss_scaling() && ++counters_.growth_tracker >= options_.growth_interval) {
    counters_.loss_scale *= options_.growth_factor;
    counters_.growth_tracker = 0;
  }
}

namespace {
// ROFORMER_ZERO_IN_UPDATE=0: the gradients zeroed at the next step, as before (for comparisons).
bool zero_gradients_in_update() {
  static const bool wanted = switched_on("ROFORMER_ZERO_IN_UPDATE");
  return wanted;
}
}  // namespace

void Trainer::update_on_host(StepResult& result, const torch::Tensor& total_norm, const torch::Tensor& losses,
                             double lr) {
  // One host synchronisation (with normalisation, each task's norm was one more): losses
  // and norm decide whether to update.
  read_figures(result, torch::cat({losses.sum().unsqueeze(0), total_norm.to(torch::kFloat).unsqueeze(0), losses})
                           .to(torch::kCPU), 2);
  result.skipped = !std::isfinite(result.loss) || !std::isfinite(result.grad_norm);
  if (!result.skipped) {
    const bool clip = options_.max_grad_norm > 0 && result.grad_norm > options_.max_grad_norm;
    // the gradients are consumed: zeroed by the update as it reads them, where it can (AdamW on
    // the CPU), so that the next step's zeroed_gradients() skips them
    optimizer_->set_zero_gradients(zero_gradients_in_update());
    optimizer_->step_clipped(lr, clip ? options_.max_grad_norm / (result.grad_norm + 1e-6) : 1.0);
    optimizer_->set_zero_gradients(false);
  }
  count_step(result.skipped);
}

void Trainer::update_on_device(StepResult& result, const torch::Tensor& total_norm, const torch::Tensor& losses,
                               double lr) {
  write_update_inputs(lr);
  // The step's one read, after the update is queued.
  finish_device_update(result, queue_device_update(total_norm, losses).to(torch::kCPU));
}

void Trainer::write_update_inputs(double lr) {
  lr_.fill_(lr);  // writes to the device, no wait
  optimizer_->write_step_number();
}

torch::Tensor Trainer::queue_device_update(const torch::Tensor& total_norm, const torch::Tensor& losses) {
  const auto norm = total_norm.to(torch::kFloat);
  const auto loss = losses.sum();
  // 1 where the step must be skipped (an inf/NaN loss or gradient), else 0.
  const auto found_inf = loss.isfinite().logical_and(norm.isfinite()).logical_not().to(torch::kFloat);
  torch::Tensor clip;  // the clipping factor, 1 under the limit; undefined without clipping
  if (options_.max_grad_norm > 0) {
    const double max = options_.max_grad_norm;
    clip = torch::where(norm.gt(max), max / (norm + 1e-6), torch::ones_like(norm));
  }
  optimizer_->step_on_device(lr_, clip, found_inf);
  return torch::cat({loss.unsqueeze(0), norm.unsqueeze(0), found_inf.unsqueeze(0), losses});
}

void Trainer::finish_device_update(StepResult& result, const torch::Tensor& summary) {
  read_figures(result, summary, 3);
  result.skipped = summary[2].item<float>() != 0;
  count_step(result.skipped);
  optimizer_->set_steps(counters_.step);
}

GradientResult Trainer::gradients(const std::vector<MicroBatch>& batches, double alpha,
                                  GradientNormalization normalization) {
  require(!batches.empty(), "gradients() needs at least one micro-batch");
  require(alpha >= 0 && alpha <= 1, "the residual scale alpha must be in [0, 1]");
  for (size_t i = 0; i < batches.size(); ++i) check_batch_in(batches[i], i);
  std::lock_guard<std::mutex> lock(*model_mutex_);
  enter_training(alpha);
  auto acc = accumulate(batches, normalization, 1.0);
  torch::NoGradGuard no_grad;
  GradientResult result;
  NamedTensors packed;
  for (size_t k = 0; k < acc.parameters.size(); ++k) packed.emplace_back(acc.parameters[k].first, acc.gradients[k].clone());
  result.gradients = unpack_qkv(packed);  // named as the optimiser names them
  auto losses = torch::stack(acc.losses).to(torch::kCPU, torch::kDouble);
  result.tasks = std::move(acc.tasks);
  for (size_t i = 0; i < result.tasks.size(); ++i) result.tasks[i].loss = losses[static_cast<int64_t>(i)].item<double>();
  at::_foreach_zero_(acc.gradients);
  return result;
}

Trainer::EvalResult Trainer::evaluate(const MicroBatch& batch) {
  require(head_for(batch) == nullptr, "evaluate() scores masked-language modelling; use predict() for task '" +
                                          batch.task + "'");
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
  return {summary[0].item<double>(), static_cast<int64_t>(summary[1].item<double>()), mlm_target_count(batch.target_ids)};
}

HeadPrediction Trainer::predict(const MicroBatch& batch) {
  auto* head = head_for(batch);
  require(head != nullptr, "predict() is for task heads; evaluate() gives the MLM loss and accuracy");
  check_batch(batch, /*training=*/false);
  std::lock_guard<std::mutex> lock(*model_mutex_);
  check_device();
  const bool was_training = model_->is_training();
  model_->train(false);
  heads_->train(false);
  torch::NoGradGuard no_grad;
  HeadPrediction result;
  try {
    auto scores = head_scores(*head, batch).to(torch::kFloat);
    result.task = batch.task;
    result.kind = head->config().kind;
    torch::Tensor loss;
    if (has_labels(batch.targets)) loss = head->loss(scores, batch.targets).to(torch::kDouble).reshape({1});
    if (result.kind == "span") {
      // The entries above the ZLPR threshold 0: the predicted spans (masked entries are −inf).
      auto positive = scores.gt(0);
      result.span_entries = positive.nonzero().to(torch::kCPU);
      result.span_scores = scores.masked_select(positive).to(torch::kCPU);
    }
    result.scores = scores.to(torch::kCPU);
    if (loss.defined()) result.loss = loss.to(torch::kCPU).item<double>();
  } catch (...) {
    model_->train(was_training);
    heads_->train(was_training);
    throw;
  }
  model_->train(was_training);
  heads_->train(was_training);
  return result;
}

}  // namespace roformer
