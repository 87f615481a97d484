// CUDA graphs of the trainer's static step (TrainerOptions::cuda_graphs).
//
// An eager training step on a GPU launches well over a thousand small kernels, and at small
// and medium batch sizes the time to launch them, not the GPU's work, sets the step time. A
// CUDA graph records every kernel of one step once and replays them all with one launch.
// Following libtorch's pattern (at::cuda::CUDAGraph), per step shape:
//
//   1st step of a shape   eager, as without graphs
//   2nd step              copied into the shape's static device buffers and run on a side
//                         stream (the warm-up: libraries set up their per-stream state), then
//                         captured from those buffers into a graph drawing on a memory pool that
//                         all the trainer's graphs share; the warm-up was this step's update
//   later steps           copied into the buffers, the graph replayed, the step's figures read
//                         once from its summary tensor (loss, gradient norm, found-inf, MLM loss)
//
// A graph replays its kernels with the arguments they were captured with. So everything that
// changes between steps lives in tensors the graph reads (inputs, the target count by which
// the loss is divided, the learning rate, AdamW's step number), and the values that do not
// (the shapes, the attention mask's layout, the residual scale α, the loss scale) make the
// graph's key: a step whose key differs takes another graph, or runs eagerly once
// kMaxGraphs are kept. Graphs apply to MLM steps (task heads' steps run eagerly: their losses
// read labels on the host) under the static step with AdamW's fused kernel (libtorch ≥ 2.4),
// without data parallelism and without gradient normalisation. graph_capture.h lists what the
// forward does differently while a graph is captured.
#pragma once

#include "optimizers.h"
#include "trainer.h"

#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace roformer {

class CudaGraphSteps;  // cuda_graph_step.cpp

#ifdef ROFORMER_WITH_CUDA_GRAPHS
constexpr bool kBuiltWithCudaGraphs = true;
#else
constexpr bool kBuiltWithCudaGraphs = false;
#endif

// ROFORMER_GRAPH_STEPS=emulate (for the CPU tests, test/cuda-graphs.test.ts): on the CPU, the
// graph steps' path — keys, static buffers, the step from them — with the step run eagerly
// where it would be captured and replayed.
inline bool graph_steps_emulated(torch::Device device) {
  const char* setting = std::getenv("ROFORMER_GRAPH_STEPS");
  return device.is_cpu() && setting != nullptr && std::string(setting) == "emulate";
}

// Whether a trainer with these options, on `device`, records its steps as CUDA graphs:
// TrainerOptions::cuda_graphs when given, else wherever graphs apply. Asking for graphs
// where they cannot apply throws std::invalid_argument saying why.
inline bool cuda_graphs_wanted(const TrainerOptions& options, torch::Device device, bool static_step,
                               const Optimizer& optimizer) {
  const bool emulated = graph_steps_emulated(device);
  std::string why;  // why graphs cannot apply here; empty where they can
  if (!device.is_cuda() && !emulated) {
    why = "CUDA graphs need a CUDA device (the model is on " + device.str() + ")";
  } else if (!kBuiltWithCudaGraphs && !emulated) {
    why = "this build of the addon has no CUDA graph support (it was built without a CUDA libtorch)";
  } else if (!static_step) {
    why = "CUDA graphs capture the static step, which staticStep: false turns off";
  } else if (!optimizer.capturable() && !emulated) {
    why = "the " + optimizer.options().kind +
          " update reads values back to the host; only AdamW with libtorch >= 2.4's fused kernel can be captured";
  } else if (options.distributed) {
    why = "data-parallel steps agree on their target counts between the ranks on the host";
  } else if (options.gradient_normalization != GradientNormalization::none) {
    why = "gradient normalisation reads each task's gradient norm on the host";
  }
  if (!options.cuda_graphs.has_value()) return why.empty() && !emulated;
  if (*options.cuda_graphs && !why.empty()) throw std::invalid_argument("cudaGraphs: " + why + "; leave cudaGraphs off");
  return *options.cuda_graphs;
}

// The trainer's graph steps (on the trainer's device; the trainer owns them).
std::shared_ptr<CudaGraphSteps> make_cuda_graph_steps(Trainer& trainer);

// One training step through the graphs: replayed, or captured (the step itself then ran as
// the warm-up); nullopt when this step runs eagerly. Called by Trainer::step under the model
// lock, after the micro-batches were checked and training mode entered.
std::optional<StepResult> cuda_graph_step(CudaGraphSteps& graphs, const std::vector<MicroBatch>& batches, double lr,
                                          double alpha);

}  // namespace roformer
