// Dropout's keep flags on the CPU, many Philox groups at a time (keep_flags_cpu.cpp).
//
// Group g of a tensor is its elements 4g .. 4g+3; its flags are Dropout::keep4(g)'s bits (bit k:
// element 4g+k kept), the same mask the CUDA kernels draw, so a CPU run and a GPU run of the same
// seed drop the same elements and fusedKernelCheck's reference (drawn with keep4) checks both.
#pragma once

#include <cstdint>

#include "fused_rows.h"

namespace roformer::kernels {

// flags[i] = dropout.keep4(first + i) for i in [0, n).
void draw_keep_flags(const Dropout& dropout, uint64_t first, int64_t n, uint8_t* flags);

// The instruction set draw_keep_flags uses on this machine: "avx512", "avx2" or "portable"
// (the best the CPU has; ROFORMER_CPU_DRAW=avx2|portable picks a lesser one, for the tests).
const char* keep_flags_isa();

}  // namespace roformer::kernels
