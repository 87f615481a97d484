// Weights in the compute dtype for the matrix products of mixed-precision training, with each
// weight's gradient accumulated by one kernel; in fp32, linear layers' and embeddings' gradients
// accumulated into .grad by their own backward.
//
// Under autocast an fp32 master weight is cast to bf16/fp16 for its product, and autograd brings
// its gradient back through the cast: a bf16 → fp32 copy into a temporary, then AccumulateGrad's
// add of it into .grad — two kernels per weight and step. compute::weight() casts through its own
// autograd function instead, whose backward adds the bf16 gradient straight into .grad (fp32 +=
// bf16: one kernel, no temporary) where the step allows it (DirectGradients) and .grad exists;
// otherwise it returns the fp32 gradient, as the plain cast does. Outside autocast, or where no
// gradient is wanted, it is the weight itself.
#pragma once

#include <torch/torch.h>

namespace roformer::compute {

// For as long as it lives (on the thread that runs the forward): whether compute::weight's
// gradients may be added into .grad directly. Off by default, and where data parallelism's reducer
// waits for AccumulateGrad's hooks to fire: the direct add bypasses AccumulateGrad.
class DirectGradients {
 public:
  explicit DirectGradients(bool on);
  ~DirectGradients();
  DirectGradients(const DirectGradients&) = delete;
  DirectGradients& operator=(const DirectGradients&) = delete;

 private:
  bool previous_;
};

// False when the environment variable ROFORMER_DIRECT_GRADIENTS is 0 (read once): for comparisons.
bool direct_gradients_wanted();
// Whether a DirectGradients scope on this thread is on: for autograd functions of their own
// that add a leaf's gradient into its .grad (fused_ops.cpp's embedding norm).
bool direct_gradients_active();
// Whether a gradient computed on `device` may be added into `t`'s .grad: a leaf whose .grad exists
// with its shape and dtype there (the trainer zeroes the gradients before a step's first backward).
bool grad_ready(const torch::Tensor& t, const torch::Device& device);

// `w` in autocast's compute dtype for `w`'s device, its gradient as above; `w` itself where
// autocast is off, grad mode is off or `w` needs no gradient.
torch::Tensor weight(const torch::Tensor& w);

// x·Wᵀ (+ b), the weight and bias through compute::weight(). Used in their own dtype (no autocast
// cast: fp32 training) under DirectGradients, their gradients are accumulated into .grad by the
// backward's matrix product itself (addmm_ with β = 1) instead of through a temporary.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});
inline torch::Tensor linear(const torch::Tensor& x, const torch::nn::Linear& layer) {
  return linear(x, layer->weight, layer->bias);
}

// A layer's output and its input passed on, for a layer whose input also continues past it (the
// residual of a post-norm block): y = x·Wᵀ (+ b) as linear() computes it, and x_on, x itself for
// the rest of the block. Both of x's gradients then reach one node, whose backward sums them in
// its matrix product (dx = d(x_on) + dy·W: addmm_ with β = 1) where autograd would add them in a
// kernel of its own. The sum is written into the tensor that arrives as x_on's gradient, so x_on
// may only meet y's descendants (norm(x_on + α·dropout(f(y))), as a post-norm block uses it):
// whatever else reads that tensor (an add's backward hands one tensor to both its inputs) then
// lies on the path back to y, and has run before this node, which waits for y's gradient.
// Outside training (no grad mode, or x needing none) x_on is x and y is linear(x, w, b).
// ROFORMER_PASSING_INPUT=0 (read once) turns it off, for comparisons.
struct LinearAndInput {
  torch::Tensor y, x_on;
};
LinearAndInput linear_passing_input(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});
inline LinearAndInput linear_passing_input(const torch::Tensor& x, const torch::nn::Linear& layer) {
  return linear_passing_input(x, layer->weight, layer->bias);
}
bool passing_wanted();

// Rows `ids` of `table` (torch::embedding); under DirectGradients, and with the table in its own
// dtype, the backward index-adds the rows' gradients into the table's .grad (no dense gradient).
torch::Tensor embedding(const torch::Tensor& table, const torch::Tensor& ids);

}  // namespace roformer::compute
