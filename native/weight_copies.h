// Autocast's bf16 copies of fp32 master weights on the CPU, kept from one step to the next so
// that the optimiser can write them in its own pass.
//
// Under bf16 autocast every weight is cast for its matrix products each step: a read of the fp32
// weight and a write of the copy, one op per weight (26 a small RoFormerV2 step, ~10 ms of its
// ~215 on the 2-core machine). AdamW's one-pass CPU update reads and writes every weight anyway,
// so it rewrites the copy as it goes (kernels/adamw_cpu.h), and the next forward takes it as it is.
//
// A copy is current while its weight's version counter is what it was when the copy was made or
// rewritten: every write through libtorch bumps it (an optimiser's ops, loading a checkpoint,
// data parallelism's broadcast), and the one-pass update, which writes through a raw pointer,
// bumps it itself. An entry holds its weight weakly; a freed weight's copy is dropped when the
// registry grows to twice its size or memory is released (dispose()). The copies stay allocated
// between steps: half the bytes of the fp32 weights they copy, which the casts used to free after
// each step.
// CPU only: a CUDA graph's replays write weights without any host code running, so no version
// counter could tell. ROFORMER_WEIGHT_COPIES=0 turns the copies off (a cast every step, as before).
#pragma once

#include <torch/torch.h>

namespace roformer::weight_copies {

// The copy of `w` in `dtype`, if one is current; else undefined.
torch::Tensor current(const torch::Tensor& w, torch::ScalarType dtype);

// Keeps `copy` (w cast to copy's dtype just now) as w's copy, if w is a CPU fp32 tensor.
void remember(const torch::Tensor& w, const torch::Tensor& copy);

// For an optimiser that writes w through a raw pointer: w's bf16 copy, to rewrite in the same
// pass (contiguous, w's shape), or undefined if w has none. After the pass, call written().
torch::Tensor to_rewrite(const torch::Tensor& w);

// Drops the copies of weights that have been freed (a disposed model's); compat::release_freed_memory
// calls it. Otherwise they go when the registry next grows to twice its size.
void drop_freed();

// After an optimiser wrote w through a raw pointer: bumps w's version, and marks `rewritten_copy`
// (what to_rewrite gave, rewritten from the new values; undefined if none) current again.
void written(const torch::Tensor& w, const torch::Tensor& rewritten_copy);

}  // namespace roformer::weight_copies
