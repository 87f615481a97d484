// Counts the libtorch ops a piece of work runs, by name, through libtorch's RecordFunction
// callbacks: a measure of kernel launches that needs no GPU. Counted are the innermost ops
// that do work — those that call no other working op — leaving out the ops that only make a
// view, allocate or hand a tensor through (aten::view, aten::empty, aten::to without a
// conversion…): on CUDA each counted op is about one kernel launch, so the count of a training
// step approximates its kernels without graphs. The fused kernels record themselves as
// roformer::* ops (fused_ops.cpp), each counted once whatever it calls (it launches its own
// kernel besides, e.g., the fill of a gradient it zeroes). The CPU runs other kernels than CUDA in places (attention,
// the optimiser in libtorch < 2.4): bench/README says how the counts compare.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace roformer::op_count {

struct Count {
  std::string phase, op;
  int64_t count;        // as an innermost working op (0: only ever around other ops, or launches nothing)
  double self_seconds;  // host wall time inside the op less the ops it ran: on the CPU, where the step's time goes
};

// Starts counting on every thread (a global callback); throws if counting already. With parents
// > 0 each op is named with that many of the ops it ran inside ("aten::copy_ < aten::_to_copy"):
// to find where ops come from; with dtypes, with its tensor inputs' dtypes ("aten::add(f32, f32)"):
// to find work done in fp32 that could be narrower.
void start(int parents = 0, bool dtypes = false);
// Stops counting and returns the counts by phase and op, most frequent first. Every op that ran
// has an entry (count 0 where it is never an innermost working op), for its self time.
std::vector<Count> stop();

// Names the part of a step that the ops counted while it lives belong to ("forward and
// backward", "update"); "other" outside any. Process-wide, not per thread: CUDA's backward runs
// on autograd's own threads. Nested phases restore the outer one.
class Phase {
 public:
  explicit Phase(const char* name);
  ~Phase();
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;

 private:
  const char* previous_;
};
// Whether `name` only makes a view, allocates or passes a tensor through (launches no kernel).
bool launches_nothing(const std::string& name);

}  // namespace roformer::op_count
