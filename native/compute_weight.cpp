#include "compute_weight.h"

#include "compat.h"

#include <cstdlib>
#include <string>

namespace roformer::compute {

namespace {

thread_local bool direct_gradients = false;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = w in `dtype`; dy/dw: added into w.grad() when `direct`, else returned in w's dtype.
class CastWeight : public torch::autograd::Function<CastWeight> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& w, int64_t dtype, bool direct) {
    ctx->save_for_backward({w});
    ctx->saved_data["direct"] = direct;
    return w.to(static_cast<torch::ScalarType>(dtype));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto w = ctx->get_saved_variables()[0];
    const auto& g = grad_outputs[0];
    if (ctx->saved_data["direct"].toBool() && g.defined()) {
      auto& grad = w.mutable_grad();
      if (grad.defined() && grad.sizes() == w.sizes() && grad.scalar_type() == w.scalar_type() &&
          grad.device() == g.device()) {
        torch::NoGradGuard no_grad;
        grad.add_(g);  // fp32 += bf16/fp16: one kernel
        return {torch::Tensor(), torch::Tensor(), torch::Tensor()};  // nothing left for AccumulateGrad
      }
    }
    return {g.defined() ? g.to(w.scalar_type()) : g, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool direct_gradients_wanted() {
  static const bool wanted = [] {
    const char* env = std::getenv("ROFORMER_DIRECT_GRADIENTS");
    return !(env && std::string(env) == "0");
  }();
  return wanted;
}

DirectGradients::DirectGradients(bool on) : previous_(direct_gradients) { direct_gradients = on; }
DirectGradients::~DirectGradients() { direct_gradients = previous_; }

torch::Tensor weight(const torch::Tensor& w) {
  if (!w.defined() || !w.requires_grad() || !torch::GradMode::is_enabled() || !w.is_floating_point()) return w;
  const auto dtype = compat::autocast_dtype(w.device());
  if (!dtype || *dtype == w.scalar_type()) return w;
  return CastWeight::apply(w, static_cast<int64_t>(*dtype), direct_gradients && w.is_leaf());
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return torch::nn::functional::linear(x, weight(w), b.defined() ? weight(b) : b);
}

}  // namespace roformer::compute
