#include "packed_qkv.h"

#include <array>
#include <string_view>

namespace roformer {

namespace {
constexpr std::string_view kPacked = "qkv.";
constexpr std::array<std::string_view, 3> kParts{"query.", "key.", "value."};

// Where the packed module's component "qkv." starts in a parameter name
// (`layer.3.attention.qkv.weight`, or `qkv.bias` for a lone attention), or npos.
size_t packed_component(const std::string& name) {
  const size_t at = name.rfind(kPacked);
  if (at == std::string::npos || (at > 0 && name[at - 1] != '.')) return std::string::npos;
  return name.find('.', at + kPacked.size()) == std::string::npos ? at : std::string::npos;
}
}  // namespace

NamedTensors unpack_qkv(const NamedTensors& named) {
  NamedTensors result;
  result.reserve(named.size());
  for (const auto& [name, tensor] : named) {
    const size_t at = packed_component(name);
    if (at == std::string::npos || !tensor.defined() || tensor.dim() == 0 || tensor.size(0) % 3 != 0) {
      result.emplace_back(name, tensor);
      continue;
    }
    const int64_t rows = tensor.size(0) / 3;
    const auto whole = tensor.detach();
    for (size_t i = 0; i < kParts.size(); ++i) {
      result.emplace_back(name.substr(0, at) + std::string(kParts[i]) + name.substr(at + kPacked.size()),
                          whole.narrow(0, static_cast<int64_t>(i) * rows, rows));
    }
  }
  return result;
}

NamedTensors public_parameters(const torch::nn::Module& module) {
  NamedTensors named;
  for (const auto& item : module.named_parameters()) named.emplace_back(item.key(), item.value());
  return unpack_qkv(named);
}

}  // namespace roformer
