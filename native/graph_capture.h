// What the model's forward does differently while the trainer records a CUDA graph of its
// step (cuda_graph_step.cpp). A capture records the kernels the step queues and replays them
// later with the same arguments, so the step must not read the device from the host (that
// waits for the device, which a capture forbids) and must not bake a host value that changes
// from step to step into a kernel's arguments. Two such places are in the forward:
//
//   - the input checks: the id ranges and the attention mask's layout (none, padded, packed)
//     are read on the host. The graph step checks the host copies itself, copies them into
//     its static device buffers, and states the layout (it is part of the graph's key);
//   - on the CPU the fused residual and embedding norms draw their dropout seed on the host:
//     a graph would replay one dropout mask forever. While the graph step of a model with
//     dropout is emulated on the CPU they give way to libtorch's chain. (On CUDA they draw from
//     libtorch's CUDA generator, whose Philox state is graph-safe: libtorch registers that
//     generator with every capture and writes each replay's seed and offset on the device.)
//
// Both are thread-local scopes: the step, its capture and its forward run on one thread
// (the autograd engine's backward thread reads neither).
#pragma once

#include <optional>

namespace roformer {

// How the attention mask shapes attention (EncoderModel::prepare_inputs): no mask at all
// (no row is padded), a key-padding mask, or the block-diagonal mask of packed rows.
enum class MaskLayout { none, padding, packed };

namespace graph_capture {

struct State {
  std::optional<MaskLayout> stated_layout;  // set: the inputs are checked device buffers
  bool host_seeded_dropout_off = false;
};

inline State& state() {
  static thread_local State current;
  return current;
}

// The layout stated by the graph step, when it is the one calling the forward.
inline std::optional<MaskLayout> stated_mask_layout() { return state().stated_layout; }
// Whether the fused norms may draw a dropout seed on the host now.
inline bool host_seeded_dropout_allowed() { return !state().host_seeded_dropout_off; }

// While alive: the forward's inputs are device buffers checked on the host, the mask of
// layout `layout`; and, when `model_has_dropout`, no dropout seed is drawn on the host.
class Scope {
 public:
  Scope(MaskLayout layout, bool model_has_dropout) : previous_(state()) {
    state().stated_layout = layout;
    state().host_seeded_dropout_off = model_has_dropout;
  }
  ~Scope() { state() = previous_; }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  State previous_;
};

}  // namespace graph_capture
}  // namespace roformer
