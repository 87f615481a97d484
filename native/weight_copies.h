// Autocast's bf16/fp16 copies of fp32 master weights, kept from one step to the next so that the
// optimiser can write them with its update instead of a cast per weight in every forward.
//
// Under autocast every weight is cast for its matrix products each step: a read of the fp32
// weight and a write of the copy, one op per weight (26 a small RoFormerV2 step, ~10 ms of its
// ~215 on the 2-core CPU machine; 73 kernels a base-model step on the GPU). Instead:
//   CPU   AdamW's one-pass update reads and writes every weight anyway, so it rewrites the copy
//         as it goes (kernels/adamw_cpu.h), and the next forward takes it as it is.
//   CUDA  after the fused AdamW kernel, refresh() rewrites every copy on the device from its
//         weight in one multi-tensor copy (a few launches instead of one cast per weight).
//
// A copy is current while its weight's version counter is what it was when the copy was made or
// rewritten: every write through libtorch bumps it (an optimiser's ops, loading a checkpoint,
// data parallelism's broadcast), and the one-pass update, which writes through a raw pointer,
// bumps it itself. A stale copy is cast again into its own memory, so its address never changes
// while something may read it without host code: a CUDA graph's replay reads the copies the
// capture used, the replayed refresh() keeps them current, and refresh_stale() (before each
// replay) catches the host's writes since (loadStateDict). An entry holds its weight weakly; a
// freed weight's copy is dropped when the registry grows to twice its size or memory is released
// (dispose()). The copies stay allocated between steps: half the bytes of the fp32 weights they
// copy, which the casts used to free after each step. ROFORMER_WEIGHT_COPIES=0 turns them off (a
// cast every step, as before).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace roformer::weight_copies {

// `w` (fp32, with autograd off: inside an autograd function's forward) in `dtype`: its kept copy,
// current (cast again first if the weight changed since), or a new copy kept from now on.
torch::Tensor cast(const torch::Tensor& w, torch::ScalarType dtype);

// For an optimiser that writes w through a raw pointer: w's bf16 copy, to rewrite in the same
// pass (contiguous, w's shape), or undefined if w has none. After the pass, call written().
torch::Tensor to_rewrite(const torch::Tensor& w);

// After an optimiser wrote w through a raw pointer: bumps w's version, and marks `rewritten_copy`
// (what to_rewrite gave, rewritten from the new values; undefined if none) current again.
void written(const torch::Tensor& w, const torch::Tensor& rewritten_copy);

// Rewrites the copy of every weight on `device` from the weight (one multi-tensor copy, on the
// current stream) and marks them current: after an optimiser updated the weights there.
void refresh(const torch::Device& device);

// Rewrites only the copies on `device` whose weights changed since they were written.
void refresh_stale(const torch::Device& device);

// The addresses of the copies on `device`, sorted: what a CUDA graph that used them reads.
std::vector<const void*> addresses(const torch::Device& device);

// Drops the copies of weights that have been freed (a disposed model's); compat::release_freed_memory
// calls it. Otherwise they go when the registry next grows to twice its size.
void drop_freed();

}  // namespace roformer::weight_copies
