#include "nvtx_ops.h"

#include <cstdlib>
#include <cstring>
#include <iostream>

#ifdef ROFORMER_WITH_NVTX_OPS
#include <torch/csrc/autograd/profiler_legacy.h>
#endif

namespace roformer {

void enable_nvtx_op_ranges_if_asked() {
  const char* setting = std::getenv("ROFORMER_NVTX_OPS");
  if (setting == nullptr || std::strcmp(setting, "1") != 0) return;
#ifdef ROFORMER_WITH_NVTX_OPS
  try {
    torch::autograd::profiler::enableProfilerLegacy(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::NVTX));
  } catch (const std::exception& e) {
    std::cerr << "roformer-v2: ROFORMER_NVTX_OPS=1, but libtorch's NVTX ranges could not be turned on: " << e.what() << "\n";
  }
#else
  std::cerr << "roformer-v2: ROFORMER_NVTX_OPS=1 is ignored: this build has no NVTX ranges (CUDA builds only)\n";
#endif
}

}  // namespace roformer
