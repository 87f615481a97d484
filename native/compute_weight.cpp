#include "compute_weight.h"

#include "compat.h"
#include "env_switch.h"
#include "kernels/grad_accumulate_cpu.h"
#include "weight_copies.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

namespace roformer::compute {

namespace {

thread_local bool direct_gradients = false;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// grad += g, g in bf16/fp16 and grad in fp32: one kernel on CUDA; on the CPU, where libtorch
// would cast g into a temporary first, bf16 is widened as it is added (kernels/grad_accumulate_cpu.h).
void add_into_grad(torch::Tensor& grad, const torch::Tensor& g) {
  if (grad.is_cpu() && grad.scalar_type() == torch::kFloat && g.scalar_type() == torch::kBFloat16 &&
      grad.is_contiguous() && g.is_contiguous() && grad.sizes() == g.sizes()) {
    RECORD_FUNCTION("roformer::add_bf16_into_float", std::vector<c10::IValue>({grad, g}));  // a named op, as op_count.h counts
    float* acc = grad.data_ptr<float>();
    const auto* low = g.data_ptr<at::BFloat16>();
    at::parallel_for(0, grad.numel(), 32768, [&](int64_t begin, int64_t end) {
      kernels::add_bf16_into_float(acc, low, begin, end);
    });
    return;
  }
  grad.add_(g);
}

// y = w in `dtype`; dy/dw: added into w.grad() when `direct`, else returned in w's dtype.
class CastWeight : public torch::autograd::Function<CastWeight> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& w, int64_t dtype, bool direct) {
    ctx->save_for_backward({w});
    ctx->saved_data["direct"] = direct;
    // the kept copy, which the optimiser rewrites with its update (weight_copies.h)
    return weight_copies::cast(w, static_cast<torch::ScalarType>(dtype));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto w = ctx->get_saved_variables()[0];
    const auto& g = grad_outputs[0];
    if (ctx->saved_data["direct"].toBool() && g.defined() && grad_ready(w, g.device())) {
      torch::NoGradGuard no_grad;
      add_into_grad(w.mutable_grad(), g);
      return {torch::Tensor(), torch::Tensor(), torch::Tensor()};  // nothing left for AccumulateGrad
    }
    return {g.defined() ? g.to(w.scalar_type()) : g, torch::Tensor(), torch::Tensor()};
  }
};

// y = x·Wᵀ (+ b) with the weight used in its own dtype (fp32 training): the backward accumulates
// the weight's gradient into .grad by the matrix product itself (addmm_, β = 1) and the bias's by
// one add, where autograd would compute each into a temporary that AccumulateGrad then adds: one
// pass over the gradient instead of three, and no weight-sized allocation per step. Two autograd
// functions, with and without the bias: libtorch 1.13's Function::apply takes no undefined tensor.
//
// `x_on`: where the layer's input also goes on past it (linear_passing_input), the gradient that
// reached it that way; dx is then x_on + dy·W from the product itself, into x_on's memory (addmm_,
// β = 1: nothing reads that gradient after this node, compute_weight.h says why).
// `into_grad`: whether w's and b's gradients may go into their .grad (false: returned, for
// autograd to pass on).
variable_list linear_backward_into_grad(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                                        const torch::Tensor& b, const torch::Tensor& dy,
                                        const torch::Tensor& x_on = {}, bool into_grad = true,
                                        torch::ScalarType x_dtype = torch::ScalarType::Undefined) {
  torch::Tensor dx, dw, db;
  const auto dy_rows = dy.reshape({-1, dy.size(-1)});
  if (ctx->needs_input_grad(0)) {
    torch::NoGradGuard no_grad;
    if (x_on.defined() && x_on.scalar_type() == w.scalar_type() && x_on.is_contiguous()) {
      dx = x_on;
      dx.view({-1, w.size(1)}).addmm_(dy_rows, w);
    } else {
      dx = dy.matmul(w);
      if (x_dtype != torch::ScalarType::Undefined && dx.scalar_type() != x_dtype) dx = dx.to(x_dtype);
      if (x_on.defined()) dx = dx + x_on;
    }
  }
  torch::NoGradGuard no_grad;
  if (ctx->needs_input_grad(1)) {
    const auto x_rows = x.reshape({-1, x.size(-1)});
    if (into_grad && grad_ready(w, dy.device())) {
      w.mutable_grad().addmm_(dy_rows.t(), x_rows);
    } else {
      dw = dy_rows.t().mm(x_rows);
    }
  }
  if (b.defined() && ctx->needs_input_grad(2)) {
    if (into_grad && grad_ready(b, dy.device())) {
      b.mutable_grad().add_(dy_rows.sum(0));
    } else {
      db = dy_rows.sum(0);
    }
  }
  return b.defined() ? variable_list{dx, dw, db} : variable_list{dx, dw};
}

class LinearIntoGrad : public torch::autograd::Function<LinearIntoGrad> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({x, w});
    return torch::nn::functional::linear(x, w);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    return linear_backward_into_grad(ctx, saved[0], saved[1], torch::Tensor(), grad_outputs[0]);
  }
};

class AffineIntoGrad : public torch::autograd::Function<AffineIntoGrad> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({x, w, b});
    return torch::nn::functional::linear(x, w, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    return linear_backward_into_grad(ctx, saved[0], saved[1], saved[2], grad_outputs[0]);
  }
};

// x·Wᵀ (+ b), with x also returned (x_on) for what continues past the layer: one node whose
// backward gets both gradients of x and sums them in the product (linear_backward_into_grad).
// w (and b) are the weight in the product's dtype: the fp32 leaf itself (its gradient into .grad
// when `direct`), or its autocast copy from compute::weight (the gradient returned to its cast).
// x is cast to w's dtype for the product, as autocast's linear would (a residual stream in fp32
// under bf16 autocast, where the fused norms are off). Saved: x in that dtype, w (and b).
variable_list passing_forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                              const torch::Tensor& b, bool direct) {
  const auto x_used = x.scalar_type() == w.scalar_type() ? x : x.to(w.scalar_type());
  ctx->save_for_backward(b.defined() ? variable_list{x_used, w, b} : variable_list{x_used, w});
  ctx->saved_data["direct"] = direct;
  ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
  return {x, torch::nn::functional::linear(x_used, w, b)};  // x returned as itself: autograd makes it a view
}

variable_list passing_backward(AutogradContext* ctx, const variable_list& grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const auto& dy = grad_outputs[1];
  const auto b = saved.size() > 2 ? saved[2] : torch::Tensor();
  auto grads = linear_backward_into_grad(ctx, saved[0], saved[1], b, dy, grad_outputs[0],
                                         ctx->saved_data["direct"].toBool(),
                                         static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt()));
  return grads;
}

class LinearPassingInput : public torch::autograd::Function<LinearPassingInput> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w, bool direct) {
    return passing_forward(ctx, x, w, torch::Tensor(), direct);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto grads = passing_backward(ctx, grad_outputs);
    grads.push_back(torch::Tensor());  // `direct`
    return grads;
  }
};

class AffinePassingInput : public torch::autograd::Function<AffinePassingInput> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b, bool direct) {
    return passing_forward(ctx, x, w, b, direct);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto grads = passing_backward(ctx, grad_outputs);
    grads.push_back(torch::Tensor());  // `direct`
    return grads;
  }
};

// Rows of a table by index: the backward adds each row's gradient into the table's .grad by
// index (index_add_), touching the looked-up rows only, where libtorch's embedding backward
// builds a dense table-sized gradient that AccumulateGrad then adds (for a tied word embedding,
// after a dense add of the decoder's gradient too).
class EmbeddingIntoGrad : public torch::autograd::Function<EmbeddingIntoGrad> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& table, const torch::Tensor& ids) {
    ctx->save_for_backward({table, ids});
    return torch::embedding(table, ids);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &table = saved[0], &ids = saved[1];
    const auto rows = grad_outputs[0].reshape({-1, table.size(1)});
    torch::NoGradGuard no_grad;
    if (grad_ready(table, rows.device())) {
      table.mutable_grad().index_add_(0, ids.reshape({-1}), rows.to(table.scalar_type()));
      return {torch::Tensor(), torch::Tensor()};
    }
    return {torch::zeros_like(table).index_add_(0, ids.reshape({-1}), rows.to(table.scalar_type())), torch::Tensor()};
  }
};

// The weight used as it is (no cast): where its gradient may go straight into .grad.
bool direct_in_own_dtype(const torch::Tensor& w) {
  return direct_gradients && w.defined() && w.requires_grad() && w.is_leaf() && torch::GradMode::is_enabled() &&
         w.is_floating_point() && compat::autocast_dtype(w.device()).value_or(w.scalar_type()) == w.scalar_type();
}

}  // namespace

bool direct_gradients_active() { return direct_gradients; }

bool grad_ready(const torch::Tensor& t, const torch::Device& device) {
  if (!t.defined() || !t.is_leaf()) return false;
  const auto& grad = t.grad();
  return grad.defined() && grad.sizes() == t.sizes() && grad.scalar_type() == t.scalar_type() && grad.device() == device;
}

bool passing_wanted() {
  static const bool wanted = switched_on("ROFORMER_PASSING_INPUT");
  return wanted;
}

bool direct_gradients_wanted() {
  static const bool wanted = switched_on("ROFORMER_DIRECT_GRADIENTS");
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
  if (direct_in_own_dtype(w) && !b.defined()) return LinearIntoGrad::apply(x, w);
  if (direct_in_own_dtype(w) && direct_in_own_dtype(b)) return AffineIntoGrad::apply(x, w, b);
  return torch::nn::functional::linear(x, weight(w), b.defined() ? weight(b) : b);
}

LinearAndInput linear_passing_input(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (!passing_wanted() || !torch::GradMode::is_enabled() || !x.requires_grad() || x.dim() < 2) return {linear(x, w, b), x};
  const bool direct = direct_in_own_dtype(w) && (!b.defined() || direct_in_own_dtype(b));
  const auto w_used = direct ? w : weight(w);
  variable_list out;
  if (!b.defined()) {
    out = LinearPassingInput::apply(x, w_used, direct);
  } else {
    out = AffinePassingInput::apply(x, w_used, direct ? b : weight(b), direct);
  }
  return {out[1], out[0]};
}

torch::Tensor embedding(const torch::Tensor& table, const torch::Tensor& ids) {
  if (direct_in_own_dtype(table)) return EmbeddingIntoGrad::apply(table, ids);
  return torch::embedding(table, ids);
}

}  // namespace roformer::compute
