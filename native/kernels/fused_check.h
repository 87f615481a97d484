// The fused kernels' check and facts for JS (fused_check.cpp): fusedKernels() and fusedKernelCheck().
#pragma once

#include <napi.h>

namespace roformer::js {

Napi::Value fused_kernels_info(const Napi::CallbackInfo& info);
Napi::Value fused_kernel_check(const Napi::CallbackInfo& info);

}  // namespace roformer::js
