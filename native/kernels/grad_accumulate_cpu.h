// A bf16 gradient added into its fp32 accumulator on the CPU in one pass (no torch header; c10's bf16 type).
//
// Under CPU autocast each weight's product makes a bf16 gradient that compute::weight's backward
// adds into the fp32 master weight's .grad. libtorch 1.13's CPU add_ of mixed dtypes first copies
// the bf16 tensor into an fp32 temporary and then adds that: two passes and a weight-sized
// allocation per weight and step (about 6% of a small bf16 step on the 2-core machine). Here each
// bf16 value is widened (its 16 bits are the top half of the float's) as it is added.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace roformer::kernels {

// acc[i] += float(g[i]) for i in [begin, end). The caller splits the range among threads.
void add_bf16_into_float(float* acc, const c10::BFloat16* g, int64_t begin, int64_t end);

}  // namespace roformer::kernels
