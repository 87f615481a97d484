// NVTX ranges around every libtorch op on the executor thread, for Nsight tools to say which
// op launched which kernel (bench/gpu/kernel-count.sh's by-op count: `ncu --nvtx
// --print-nvtx-rename kernel` names each kernel after its innermost op). Asked for with the
// environment variable ROFORMER_NVTX_OPS=1; compiled only into CUDA builds (CMake option
// ROFORMER_NVTX_OPS), a no-op elsewhere. It is libtorch's own NVTX mode (what PyTorch's
// torch.autograd.profiler.emit_nvtx turns on): thread-local, carried into autograd's threads.
#pragma once

namespace roformer {

// Turns the ranges on for the calling thread when ROFORMER_NVTX_OPS=1 (the executor thread calls
// it once, as it starts).
void enable_nvtx_op_ranges_if_asked();

}  // namespace roformer
