#include "op_count.h"

#include <ATen/core/ivalue.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace roformer::op_count {

namespace {

// Ops with no kernel of their own: views and reshapes, allocations, and composites that, when they
// call nothing (already contiguous, already of that dtype…), return their input.
const std::unordered_set<std::string> kNoKernel = {
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::alias",
    "aten::detach", "aten::detach_", "aten::t", "aten::transpose", "aten::permute", "aten::expand", "aten::expand_as",
    "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice", "aten::narrow", "aten::split",
    "aten::split_with_sizes", "aten::unbind", "aten::chunk", "aten::unflatten", "aten::flatten", "aten::view_as",
    "aten::numpy_T", "aten::movedim", "aten::swapaxes", "aten::diagonal", "aten::empty", "aten::empty_like",
    "aten::empty_strided", "aten::new_empty", "aten::new_empty_strided", "aten::resize_", "aten::contiguous",
    "aten::to", "aten::type_as", "aten::lift", "aten::lift_fresh", "aten::set_", "aten::result_type",
    "aten::is_nonzero", "aten::size", "aten::stride", "aten::_nnz", "aten::requires_grad_", "aten::retain_grad",
    "aten::_has_compatible_shallow_copy_type", "aten::is_same_size", "aten::broadcast_tensors",
    "aten::_local_scalar_dense", "aten::item", "aten::record_stream", "aten::resolve_conj", "aten::resolve_neg",
    "aten::conj", "aten::_conj", "aten::_neg_view", "aten::real", "detach", "aten::matmul", "aten::linear"};

struct Frame {
  const char* name = "";
  std::string dtypes;        // "(bf16, f32)": its tensor inputs' dtypes, when start() asked for them
  bool host_scalar = false;  // converts_host_scalar
  bool works = false;        // a working op ran inside this one
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  double child_seconds = 0;  // wall time of the ops run inside this one
};

// A conversion of a 0-dim CPU tensor (copy_'s source, _to_copy's input): how libtorch turns a
// number argument into a tensor of the right dtype. On CUDA that is host work (or a host-to-device
// copy), not a kernel.
bool converts_host_scalar(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  const size_t at = name == "aten::copy_" ? 1 : name == "aten::_to_copy" ? 0 : SIZE_MAX;
  if (at == SIZE_MAX) return false;
  const auto inputs = fn.inputs();
  if (inputs.size() <= at || !inputs[at].isTensor()) return false;
  const auto& t = inputs[at].toTensor();
  return t.defined() && t.is_cpu() && t.dim() == 0;
}

std::mutex mutex;
struct Tally {
  int64_t count = 0;
  double self_seconds = 0;
};
std::unordered_map<std::string, std::unordered_map<std::string, Tally>> counts;  // phase → op → tally
std::atomic<const char*> current_phase{"other"};
int parents_named = 0;       // start()'s arguments
bool dtypes_named = false;

const char* short_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "f32";
    case at::kDouble: return "f64";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "f16";
    case at::kLong: return "i64";
    case at::kInt: return "i32";
    case at::kBool: return "bool";
    case at::kByte: return "u8";
    default: return c10::toString(t);
  }
}

// "(bf16, f32)": the dtypes of fn's defined tensor inputs, in order.
std::string input_dtypes(const at::RecordFunction& fn) {
  std::string out;
  for (const auto& input : fn.inputs()) {
    if (!input.isTensor() || !input.toTensor().defined()) continue;
    out += (out.empty() ? "(" : ", ") + std::string(short_name(input.toTensor().scalar_type()));
  }
  return out.empty() ? "()" : out + ")";
}

std::optional<at::CallbackHandle> handle;
thread_local std::vector<Frame> stack;  // the ops running on this thread, innermost last

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  stack.push_back(Frame{fn.name(), dtypes_named ? input_dtypes(fn) : std::string(), converts_host_scalar(fn)});
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (stack.empty()) return;  // began before counting started
  const Frame frame = stack.back();
  stack.pop_back();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - frame.started).count();
  const std::string name = fn.name();
  const bool works = !launches_nothing(name) && !frame.host_scalar;
  if (!stack.empty()) {
    stack.back().child_seconds += seconds;
    if (works) stack.back().works = true;
  }
  // The fused kernels (roformer::*) launch their own kernel besides any their allocations do.
  const bool counted = works && (!frame.works || name.rfind("roformer::", 0) == 0);
  std::string key = name + frame.dtypes;
  for (int i = 1; i <= parents_named && i <= static_cast<int>(stack.size()); ++i) {
    key += std::string(" < ") + stack[stack.size() - i].name;
  }
  std::lock_guard<std::mutex> lock(mutex);
  Tally& tally = counts[current_phase.load()][key];
  if (counted) ++tally.count;
  tally.self_seconds += std::max(0.0, seconds - frame.child_seconds);
}

}  // namespace

// Autograd's own records (autograd::engine::evaluate_function: …) wrap the ops of a backward
// node: those ops are counted, not the node.
bool launches_nothing(const std::string& name) { return kNoKernel.count(name) > 0 || name.rfind("autograd::", 0) == 0; }

void start(int parents, bool dtypes) {
  std::lock_guard<std::mutex> lock(mutex);
  if (handle) throw std::logic_error("op counting has already started: stop it first");
  counts.clear();
  parents_named = parents;
  dtypes_named = dtypes;
  handle = at::addGlobalCallback(
      at::RecordFunctionCallback(&on_start, &on_end).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
}

std::vector<Count> stop() {
  std::lock_guard<std::mutex> lock(mutex);
  if (!handle) throw std::logic_error("op counting has not started");
  at::removeCallback(*handle);
  handle.reset();
  std::vector<Count> out;
  for (const auto& [phase, ops] : counts)
    for (const auto& [op, tally] : ops) out.push_back(Count{phase, op, tally.count, tally.self_seconds});
  std::sort(out.begin(), out.end(), [](const Count& a, const Count& b) {
    if (a.count != b.count) return a.count > b.count;
    if (a.self_seconds != b.self_seconds) return a.self_seconds > b.self_seconds;
    return a.phase != b.phase ? a.phase < b.phase : a.op < b.op;
  });
  return out;
}

Phase::Phase(const char* name) : previous_(current_phase.exchange(name)) {}
Phase::~Phase() { current_phase.store(previous_); }

}  // namespace roformer::op_count
