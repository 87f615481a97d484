// CUDA graphs of the trainer's static step: the capture, the replay and what they keep
// (cuda_graph_step.h explains the scheme). The CUDA parts are compiled in CUDA builds only;
// elsewhere only the CPU emulation (graph_steps_emulated()) runs, the step eager from the buffers.
#include "cuda_graph_step.h"

#include "compat.h"
#include "compute_weight.h"
#include "gradient_normalization.h"
#include "graph_capture.h"
#include "weight_copies.h"

#include <ATen/autocast_mode.h>
#ifdef ROFORMER_WITH_CUDA_GRAPHS
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <iostream>

namespace roformer {

namespace {

// Graphs kept per trainer. A run that rounds its lengths up to a few buckets (the data
// pipeline does on CUDA) needs one per bucket and batch size; steps of further shapes run
// eagerly. The graphs share one memory pool, so more graphs cost little memory.
constexpr size_t kMaxGraphs = 16;
// Keys met once, remembered for their second meeting (the oldest forgotten first).
constexpr size_t kMaxSeenKeys = 64;

// What a graph fixes about one micro-batch.
struct BatchShape {
  int64_t rows = 0, seq = 0, target_slots = 0;
  bool token_types = false;
  MaskLayout layout = MaskLayout::none;
  bool operator==(const BatchShape& o) const {
    return rows == o.rows && seq == o.seq && target_slots == o.target_slots && token_types == o.token_types &&
           layout == o.layout;
  }
};

// What a graph fixes about a step: its micro-batches' shapes, and the host values its kernels
// were captured with.
struct GraphKey {
  std::vector<BatchShape> batches;
  double alpha = 1, loss_scale = 1;
  bool operator==(const GraphKey& o) const {
    return batches == o.batches && alpha == o.alpha && loss_scale == o.loss_scale;
  }
};

// One micro-batch's static device inputs: every step of the graph's shape is copied into them.
struct InputBuffers {
  torch::Tensor input_ids, token_type_ids, attention_mask, target_positions, target_ids;
};

void copy_into(torch::Tensor& buffer, const torch::Tensor& host) {
  if (host.defined()) buffer.copy_(host.reshape(buffer.sizes()));
}

}  // namespace

class CudaGraphSteps {
 public:
  explicit CudaGraphSteps(Trainer& trainer);
  std::optional<StepResult> step(const std::vector<MicroBatch>& batches, double lr, double alpha);

 private:
  struct Graph {
    GraphKey key;
    std::vector<InputBuffers> inputs;
#ifdef ROFORMER_WITH_CUDA_GRAPHS
    at::cuda::CUDAGraph graph;
#endif
    torch::Tensor summary;  // its output, in the pool: [loss, norm, found_inf, MLM loss]
  };

  // The step's key, after checking its inputs on the host (the capture reads nothing back).
  // nullopt: a step the graphs do not take (a task head's).
  std::optional<GraphKey> key_of(const std::vector<MicroBatch>& batches, double alpha) const;
  Graph* find(const GraphKey& key);
  // New static buffers for `key`; the step's inputs are then copied in by fill().
  std::vector<InputBuffers> make_inputs(const GraphKey& key) const;
  void fill(std::vector<InputBuffers>& inputs, const std::vector<MicroBatch>& batches);
  // The step from the buffers: forward, backward, unscaling, norm, clipping, update; returns
  // the figures on the device and reads nothing back. Runs as the warm-up and as the capture.
  torch::Tensor run_step(const GraphKey& key, const std::vector<InputBuffers>& inputs);
  // Warm-up and capture of a new graph; returns the step's figures (the warm-up's), on the host.
  torch::Tensor capture(std::unique_ptr<Graph> graph);
  // A graph's step: its replay, or where emulated, the step run from its buffers; returns the
  // step's figures on the host.
  torch::Tensor replay(Graph& graph);
  // The result the trainer returns, from the figures read back.
  StepResult result_of(const std::vector<MicroBatch>& batches, double loss_scale, const torch::Tensor& summary);
  // The device addresses a graph reads and writes besides its own buffers: parameters, their
  // gradients, the optimiser's state, the learning rate. Should any change (weights loaded
  // into new tensors, say), the graphs would write to freed memory: they are dropped.
  std::vector<const void*> addresses() const;

  Trainer& trainer_;
  torch::Device device_;
  const bool emulated_;  // on the CPU: graph_steps_emulated()
#ifdef ROFORMER_WITH_CUDA_GRAPHS
  c10::cuda::MempoolId_t pool_{0, 0};
  std::optional<c10::cuda::CUDAStream> stream_;  // captures cannot use the default stream
#endif
  std::vector<std::unique_ptr<Graph>> graphs_;
  std::vector<GraphKey> seen_;  // keys met once: the second meeting captures
  std::vector<const void*> addresses_;
  bool failed_ = false;  // a capture failed: every later step runs eagerly
};

CudaGraphSteps::CudaGraphSteps(Trainer& trainer)
    : trainer_(trainer), device_(trainer.device_), emulated_(graph_steps_emulated(trainer.device_)) {
#ifdef ROFORMER_WITH_CUDA_GRAPHS
  if (!emulated_) {
    pool_ = at::cuda::graph_pool_handle();
    stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index());
  }
#endif
}

std::optional<GraphKey> CudaGraphSteps::key_of(const std::vector<MicroBatch>& batches, double alpha) const {
  GraphKey key;
  key.alpha = alpha;
  key.loss_scale = trainer_.counters_.loss_scale;
  for (const auto& b : batches) {
    if (trainer_.head_for(b) != nullptr) return std::nullopt;
    BatchShape shape;
    // The checks the forward would make, here on the host copies.
    shape.layout = trainer_.model_->check_inputs(b.input_ids, b.token_type_ids, b.attention_mask);
    shape.rows = b.input_ids.size(0);
    shape.seq = b.input_ids.size(1);
    trainer_.model_->prepare_positions(b.target_positions, shape.rows * shape.seq);
    shape.target_slots = b.target_ids.numel();
    shape.token_types = b.token_type_ids.defined();
    key.batches.push_back(shape);
  }
  return key;
}

CudaGraphSteps::Graph* CudaGraphSteps::find(const GraphKey& key) {
  auto it = std::find_if(graphs_.begin(), graphs_.end(), [&](const auto& g) { return g->key == key; });
  return it == graphs_.end() ? nullptr : it->get();
}

std::vector<InputBuffers> CudaGraphSteps::make_inputs(const GraphKey& key) const {
  const auto ids = torch::TensorOptions().dtype(torch::kLong).device(device_);
  std::vector<InputBuffers> inputs;
  for (const auto& shape : key.batches) {
    InputBuffers in;
    in.input_ids = torch::empty({shape.rows, shape.seq}, ids);
    if (shape.token_types) in.token_type_ids = torch::empty({shape.rows, shape.seq}, ids);
    if (shape.layout != MaskLayout::none) in.attention_mask = torch::empty({shape.rows, shape.seq}, ids);
    in.target_positions = torch::empty({shape.target_slots}, ids);
    in.target_ids = torch::empty({shape.target_slots}, ids);
    inputs.push_back(in);
  }
  return inputs;
}

void CudaGraphSteps::fill(std::vector<InputBuffers>& inputs, const std::vector<MicroBatch>& batches) {
  const int64_t pad = trainer_.model_->config().pad_token_id;
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto& b = batches[i];
    auto& in = inputs[i];
    copy_into(in.input_ids, b.input_ids);
    copy_into(in.token_type_ids, b.token_type_ids);
    // Without a mask the forward masks the padding ids; the graph takes that mask as input.
    if (in.attention_mask.defined()) copy_into(in.attention_mask, b.attention_mask.defined() ? b.attention_mask : b.input_ids.ne(pad));
    copy_into(in.target_positions, b.target_positions);
    copy_into(in.target_ids, b.target_ids);
  }
}

torch::Tensor CudaGraphSteps::run_step(const GraphKey& key, const std::vector<InputBuffers>& inputs) {
  auto& t = trainer_;
  // The MLM task's parameters (heads' gradients reset, as an eager MLM step does), with
  // gradient buffers that stay the same tensors from step to step: the graph writes into them.
  std::vector<Trainer::TaskGroup> mlm{Trainer::TaskGroup{"mlm", nullptr, {}, 0}};
  auto parameters = t.step_parameters(mlm);
  auto grads = t.zeroed_gradients(parameters);
  // The loss is the mean over the step's targets, counted here on the device.
  auto targets = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
  for (const auto& in : inputs) targets = targets + in.target_ids.ne(kIgnoredTarget).sum().to(torch::kFloat);
  auto loss_sum = torch::zeros_like(targets);
  const bool dropout = t.model_->config().hidden_dropout_prob > 0;
  // Each weight cast to bf16/fp16 once for all the micro-batches, as the eager step does; the
  // cache is gone before the update below changes the weights.
  std::optional<compat::AutocastCacheScope> cast_once_per_step(std::in_place);
  // Gradients added straight into .grad, as the eager step does (compute_weight.h): the same
  // arithmetic, and the .grad tensors stay the graph's buffers.
  compute::DirectGradients direct(t.reducer_ == nullptr && compute::direct_gradients_wanted());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& in = inputs[i];
    MicroBatch b;
    b.input_ids = in.input_ids;
    b.token_type_ids = in.token_type_ids;
    b.attention_mask = in.attention_mask;
    b.target_positions = in.target_positions;
    b.target_ids = in.target_ids;
    torch::Tensor sum;
    {
      graph_capture::Scope scope(key.batches[i].layout, dropout);
      sum = t.mlm_loss_sum(b);
    }
    (sum * (key.loss_scale / targets)).backward();
    loss_sum = loss_sum + sum.detach();
  }
  cast_once_per_step.reset();
  torch::NoGradGuard no_grad;
  if (key.loss_scale != 1.0) at::_foreach_mul_(grads, 1.0 / key.loss_scale);
  const auto total_norm = global_norm(grads);
  const auto losses = (loss_sum / targets).unsqueeze(0);
  auto summary = t.queue_device_update(total_norm, losses);
  at::_foreach_zero_(grads);
  return summary;
}

torch::Tensor CudaGraphSteps::capture(std::unique_ptr<Graph> graph) {
  torch::Tensor figures;
#ifdef ROFORMER_WITH_CUDA_GRAPHS
  if (!emulated_) {
    // The side stream starts after the inputs and the learning rate are written.
    const auto current = c10::cuda::getCurrentCUDAStream(device_.index());
    at::cuda::CUDAEvent inputs_written;
    inputs_written.record(current);
    inputs_written.block(*stream_);
    {
      c10::cuda::CUDAStreamGuard on_side_stream(*stream_);
      // The warm-up is this step itself, from the buffers.
      figures = run_step(graph->key, graph->inputs).to(torch::kCPU);
      // Weight casts cached by autocast before the capture would be replayed as they are, so
      // the capture starts with an empty cache and makes its own casts.
      at::autocast::clear_cache();
      try {
        graph->graph.capture_begin(pool_);
        try {
          graph->summary = run_step(graph->key, graph->inputs);
        } catch (...) {
          graph->summary = torch::Tensor();
          try {
            graph->graph.capture_end();  // ends the stream's capture, which the error invalidated
          } catch (...) {
          }
          throw;
        }
        graph->graph.capture_end();
      } catch (const std::exception& e) {
        // The step itself is done (the warm-up); the training goes on eagerly.
        std::cerr << "roformer-v2: CUDA graph capture failed, the training continues without graphs: " << e.what()
                  << "\n";
        failed_ = true;
        graphs_.clear();
      }
      at::autocast::clear_cache();
    }
    at::cuda::CUDAEvent side_done;
    side_done.record(*stream_);
    side_done.block(current);
  }
#endif
  if (emulated_) figures = run_step(graph->key, graph->inputs).to(torch::kCPU);
  if (!failed_) {
    graphs_.push_back(std::move(graph));
    addresses_ = addresses();
  }
  return figures;
}

torch::Tensor CudaGraphSteps::replay(Graph& graph) {
#ifdef ROFORMER_WITH_CUDA_GRAPHS
  if (!emulated_) {
    // The weights' copies the graph reads, where the host wrote weights since (loadStateDict):
    // the replay's own refresh comes only after its forward (weight_copies.h).
    weight_copies::refresh_stale(device_);
    graph.graph.replay();
    return graph.summary.to(torch::kCPU);
  }
#endif
  return run_step(graph.key, graph.inputs).to(torch::kCPU);
}

std::vector<const void*> CudaGraphSteps::addresses() const {
  std::vector<const void*> out{trainer_.lr_.data_ptr()};
  for (const auto& p : trainer_.model_->parameters()) {
    out.push_back(p.data_ptr());
    out.push_back(p.grad().defined() ? p.grad().data_ptr() : nullptr);
  }
  for (const auto& [name, state] : trainer_.optimizer_->state()) out.push_back(state.data_ptr());
  const auto copies = weight_copies::addresses(device_);
  out.insert(out.end(), copies.begin(), copies.end());
  return out;
}

StepResult CudaGraphSteps::result_of(const std::vector<MicroBatch>& batches, double loss_scale,
                                     const torch::Tensor& summary) {
  StepResult result;
  result.loss_scale = loss_scale;
  TaskStepResult task{"mlm"};
  for (const auto& b : batches) task.examples += mlm_target_count(b.target_ids);
  result.targets = task.examples;
  result.tasks.push_back(task);
  trainer_.finish_device_update(result, summary);
  result.step = trainer_.counters_.step;
  result.skipped_steps = trainer_.counters_.skipped_steps;
  return result;
}

std::optional<StepResult> CudaGraphSteps::step(const std::vector<MicroBatch>& batches, double lr, double alpha) {
  if (failed_) return std::nullopt;
  const auto key = key_of(batches, alpha);
  if (!key) return std::nullopt;
  if (!graphs_.empty() && addresses() != addresses_) {
    // Something the graphs write was replaced: capture afresh from the next meeting on.
    graphs_.clear();
    seen_.clear();
  }
  // The values a graph reads besides its inputs, written before it runs.
  trainer_.write_update_inputs(lr);
  if (auto* graph = find(*key)) {
    fill(graph->inputs, batches);
    auto result = result_of(batches, key->loss_scale, replay(*graph));
    result.cuda_graph = "replayed";
    return result;
  }
  const bool met_before = std::find(seen_.begin(), seen_.end(), *key) != seen_.end();
  if (!met_before || graphs_.size() >= kMaxGraphs) {
    if (!met_before) {
      // A key that changes every step (α warming up) would grow the list without end.
      if (seen_.size() >= kMaxSeenKeys) seen_.erase(seen_.begin());
      seen_.push_back(*key);
    }
    return std::nullopt;
  }
  seen_.erase(std::find(seen_.begin(), seen_.end(), *key));
  auto graph = std::make_unique<Graph>();
  graph->key = *key;
  graph->inputs = make_inputs(*key);
  fill(graph->inputs, batches);
  const auto figures = capture(std::move(graph));
  auto result = result_of(batches, key->loss_scale, figures);
  if (!failed_) result.cuda_graph = "captured";
  return result;
}

std::shared_ptr<CudaGraphSteps> make_cuda_graph_steps(Trainer& trainer) {
  return std::make_shared<CudaGraphSteps>(trainer);
}

std::optional<StepResult> cuda_graph_step(CudaGraphSteps& graphs, const std::vector<MicroBatch>& batches, double lr,
                                          double alpha) {
  return graphs.step(batches, lr, alpha);
}

}  // namespace roformer
