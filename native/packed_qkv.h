// Self-attention's query, key and value projections are one packed Linear, `qkv`
// (3·hidden rows: the query's, then the key's, then the value's), so the forward makes
// one matrix product instead of three. Everything outside the module tree keeps the
// three tensors apart under their own names (`….query.weight`, `….key.weight`,
// `….value.weight`, and `.bias` where there are biases): namedParameters and
// loadStateDict, gradients, the optimiser's per-tensor rules and its state in
// checkpoints, and through them model dirs (Hugging Face names), the ONNX export and
// resumed checkpoints written before the packing. This file is the one place that
// translates between the two.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace roformer {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// `named` with every packed tensor (`<prefix>qkv.<leaf>`, first dimension 3·n) replaced,
// in place in the order, by its three row blocks `<prefix>query.<leaf>`, `<prefix>key.<leaf>`
// and `<prefix>value.<leaf>`: views of the packed tensor's storage (detached from autograd),
// so writing into a block writes the packed tensor. Other entries pass through unchanged.
NamedTensors unpack_qkv(const NamedTensors& named);

// A module's parameters under the names outside code sees: unpack_qkv of named_parameters().
NamedTensors public_parameters(const torch::nn::Module& module);

}  // namespace roformer
