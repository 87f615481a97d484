// The environment variables that turn one of the addon's speed mechanisms off, for comparisons
// (ROFORMER_WEIGHT_COPIES=0, ROFORMER_DIRECT_GRADIENTS=0, ...): on unless set to "0". Callers
// keep the answer in a function-local static, so each is read once per process.
#pragma once

#include <cstdlib>
#include <cstring>

namespace roformer {

inline bool switched_on(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr || std::strcmp(value, "0") != 0;
}

}  // namespace roformer
