#include "optimizers.h"

#include "compat.h"
#include "kernels/adamw_cpu.h"
#include "weight_copies.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace roformer {

Optimizer::Optimizer(NamedTensors parameters, OptimizerOptions options)
    : parameters_(std::move(parameters)), options_(std::move(options)) {}

void Optimizer::add_state(const std::string& key, const std::string& name, const torch::Tensor& like) {
  state_[key + "." + name] = torch::zeros_like(like, torch::MemoryFormat::Contiguous);
}

void Optimizer::add_adam_moments() {
  for (auto& [name, p] : parameters_) {
    add_state("exp_avg", name, p);
    add_state("exp_avg_sq", name, p);
  }
}

void Optimizer::step(double lr) {
  torch::NoGradGuard no_grad;
  const int64_t t = ++steps_;
  for (auto& [name, param] : parameters_) {
    if (!param.grad().defined()) continue;
    update(name, param, param.grad(), lr, t);
  }
}

void Optimizer::step_clipped(double lr, double multiplier) {
  if (multiplier != 1.0) {
    torch::NoGradGuard no_grad;
    auto grads = gradients();
    at::_foreach_mul_(grads, multiplier);
  }
  step(lr);
}

std::vector<torch::Tensor> Optimizer::gradients() const {
  std::vector<torch::Tensor> grads;
  for (const auto& [name, p] : parameters_) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  return grads;
}

void Optimizer::step_on_device(const torch::Tensor& lr, const torch::Tensor& clip, const torch::Tensor& found_inf) {
  // Without a fused kernel the decision is read here: one scalar, before the update.
  if (found_inf.item<float>() != 0) return;
  torch::NoGradGuard no_grad;
  if (clip.defined()) {
    auto grads = gradients();
    compat::foreach_mul_(grads, clip);
  }
  step(lr.item<double>());
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& saved) {
  std::vector<std::string> problems;
  for (const auto& [key, tensor] : saved) {
    auto it = state_.find(key);
    if (it == state_.end()) {
      problems.push_back("unexpected optimizer tensor " + key);
    } else if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream out;
      out << "optimizer tensor " << key << " has shape " << tensor.sizes() << " but expected " << it->second.sizes();
      problems.push_back(out.str());
    }
  }
  for (const auto& [key, tensor] : state_) {
    if (!saved.count(key)) problems.push_back("missing optimizer tensor " + key);
  }
  if (!problems.empty()) {
    std::string message = "optimizer state (" + options_.kind + ") does not match: ";
    for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw std::invalid_argument(message);
  }
  torch::NoGradGuard no_grad;
  for (auto& [key, tensor] : state_) tensor.copy_(saved.at(key));
}

namespace {

// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay. The update runs
// as multi-tensor (_foreach) operations over all parameters at once.
class AdamW : public Optimizer {
 public:
  AdamW(NamedTensors parameters, OptimizerOptions options) : Optimizer(std::move(parameters), std::move(options)) {
    add_adam_moments();
  }

  void step(double lr) override { update_all(lr, 1.0); }
  void step_clipped(double lr, double multiplier) override { update_all(lr, multiplier); }

  // Every parameter's update, each gradient multiplied by `multiplier` first.
  void update_all(double lr, double multiplier) {
    torch::NoGradGuard no_grad;
    zeroed_.clear();
    const int64_t t = ++steps_;
    std::vector<torch::Tensor> params, grads, exp_avg, exp_avg_sq, decayed;
    for (auto& [name, p] : parameters_) {
      if (!p.grad().defined()) continue;
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avg.push_back(state("exp_avg", name));
      exp_avg_sq.push_back(state("exp_avg_sq", name));
      if (decays(p)) decayed.push_back(p);
    }
    if (params.empty()) return;
    const auto& o = options_;
    if (step_in_one_pass(params, grads, exp_avg, exp_avg_sq, lr, t, multiplier)) return;
    if (multiplier != 1.0) at::_foreach_mul_(grads, multiplier);
    // p ← p·(1 − lr·λ): decay decoupled from the gradient statistics
    if (o.weight_decay != 0 && !decayed.empty()) at::_foreach_mul_(decayed, 1.0 - lr * o.weight_decay);
    // m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
    at::_foreach_mul_(exp_avg, o.beta1);
    at::_foreach_add_(exp_avg, grads, 1.0 - o.beta1);
    at::_foreach_mul_(exp_avg_sq, o.beta2);
    at::_foreach_addcmul_(exp_avg_sq, grads, grads, 1.0 - o.beta2);
    // p ← p − lr/(1−β1ᵗ) · m / (sqrt(v/(1−β2ᵗ)) + ε)
    const double bias1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
    const double bias2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
    // The denominator goes into buffers kept across steps (no model-sized allocation per step).
    if (denominators_.size() != exp_avg_sq.size()) {
      denominators_.clear();
      for (const auto& v : exp_avg_sq) denominators_.push_back(torch::empty_like(v));
    }
    auto& denom = denominators_;
    for (size_t i = 0; i < denom.size(); ++i) torch::sqrt_out(denom[i], exp_avg_sq[i]);
    at::_foreach_div_(denom, std::sqrt(bias2));
    at::_foreach_add_(denom, o.eps);
    at::_foreach_addcdiv_(params, exp_avg, denom, -lr / bias1);
  }

  bool capturable() const override { return compat::kHasFusedAdamW; }

  // On the CPU with fp32 tensors: the update below in one pass per parameter (kernels/adamw_cpu.h),
  // each parameter split among the threads. False where it does not apply (the chain then runs).
  bool step_in_one_pass(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                        const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                        double lr, int64_t t, double multiplier) {
    auto fits = [](const torch::Tensor& x) {
      return x.is_cpu() && x.scalar_type() == torch::kFloat && x.is_contiguous();
    };
    for (size_t i = 0; i < params.size(); ++i) {
      if (!fits(params[i]) || !fits(grads[i]) || !fits(exp_avg[i]) || !fits(exp_avg_sq[i])) return false;
    }
    const auto& o = options_;
    kernels::AdamWStep step;
    step.grad_multiplier = static_cast<float>(multiplier);  // as _foreach_mul_ would: g · float(multiplier)
    step.beta1 = static_cast<float>(o.beta1);
    step.beta2 = static_cast<float>(o.beta2);
    step.inv_sqrt_bias2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(t))));
    step.eps = static_cast<float>(o.eps);
    step.step_size = static_cast<float>(lr / (1.0 - std::pow(o.beta1, static_cast<double>(t))));
    for (size_t i = 0; i < params.size(); ++i) {
      step.decay = static_cast<float>(o.weight_decay != 0 && decays(params[i]) ? 1.0 - lr * o.weight_decay : 1.0);
      float* p = params[i].data_ptr<float>();
      float* g = grads[i].data_ptr<float>();
      float* m = exp_avg[i].data_ptr<float>();
      float* v = exp_avg_sq[i].data_ptr<float>();
      // a weight cast for bf16 autocast has its copy rewritten in the same pass (weight_copies.h),
      // and the gradient is zeroed as it is consumed where the trainer asked for it
      const auto copy = weight_copies::to_rewrite(params[i]);
      auto* p_bf16 = copy.defined() ? copy.data_ptr<at::BFloat16>() : nullptr;
      at::parallel_for(0, params[i].numel(), 32768, [&](int64_t begin, int64_t end) {
        kernels::adamw_cpu_pass(p, g, m, v, p_bf16, zero_gradients_, begin, end, step);
      });
      weight_copies::written(params[i], copy);  // written through a raw pointer: its version is bumped here
      if (zero_gradients_) {
        torch::autograd::impl::bump_version(grads[i]);  // the same for the gradient
        auto& zeroed = zeroed_[grads[i].storage().unsafeGetStorageImpl()];
        zeroed.elements += grads[i].numel();
        zeroed.version = static_cast<int64_t>(grads[i]._version());
      }
    }
    return true;
  }

  void write_step_number() override {
    if (!compat::kHasFusedAdamW || parameters_.empty()) return;
    if (!step_count_.defined()) {
      step_count_ = torch::zeros({}, parameters_.front().second.options().dtype(torch::kFloat));
    }
    // The count this update would make (the host's, written without waiting: a skipped
    // step leaves steps() where it was, and the next update writes the same number).
    step_count_.fill_(static_cast<double>(steps_ + 1));
  }

  void step_on_device(const torch::Tensor& lr, const torch::Tensor& clip, const torch::Tensor& found_inf) override {
    zeroed_.clear();
    if (!compat::kHasFusedAdamW) return Optimizer::step_on_device(lr, clip, found_inf);
    torch::NoGradGuard no_grad;
    // Two groups: the decayed parameters (matrices, embeddings) and the others.
    struct Group {
      std::vector<torch::Tensor> params, grads, exp_avg, exp_avg_sq, steps;
    } decayed, plain;
    TORCH_CHECK(step_count_.defined(), "AdamW::step_on_device: write_step_number() first");
    for (auto& [name, p] : parameters_) {
      if (!p.grad().defined()) continue;
      auto& group = decays(p) ? decayed : plain;
      group.params.push_back(p);
      group.grads.push_back(p.grad());
      group.exp_avg.push_back(state("exp_avg", name));
      group.exp_avg_sq.push_back(state("exp_avg_sq", name));
      group.steps.push_back(step_count_);  // one count, shared: the kernel only reads it
    }
    // The kernel divides the gradients by grad_scale: 1 / clip multiplies them by clip.
    const auto grad_scale = clip.defined() ? clip.reciprocal() : torch::ones({}, lr.options());
    const auto& o = options_;
    for (auto* group : {&decayed, &plain}) {
      if (group->params.empty()) continue;
      compat::fused_adamw_(group->params, group->grads, group->exp_avg, group->exp_avg_sq, group->steps, lr, o.beta1,
                           o.beta2, group == &decayed ? o.weight_decay : 0.0, o.eps, grad_scale, found_inf);
    }
    // the weights' autocast copies rewritten from the new values, all in one multi-tensor copy
    // (weight_copies.h): the next forward casts none of them
    weight_copies::refresh(parameters_.front().second.device());
  }

 protected:
  void update(const std::string&, torch::Tensor&, const torch::Tensor&, double, int64_t) override {
    // unused: step() above updates all parameters together
  }

 private:
  std::vector<torch::Tensor> denominators_;
  torch::Tensor step_count_;  // fused kernel: the update's step number, on the device
};

// LAMB (You et al. 2019): the Adam direction plus weight decay, rescaled per
// parameter by the trust ratio ‖p‖ / ‖update‖.
class Lamb : public Optimizer {
 public:
  Lamb(NamedTensors parameters, OptimizerOptions options) : Optimizer(std::move(parameters), std::move(options)) {
    add_adam_moments();
  }

 protected:
  void update(const std::string& name, torch::Tensor& p, const torch::Tensor& g, double lr, int64_t t) override {
    const auto& o = options_;
    auto& m = state("exp_avg", name);
    auto& v = state("exp_avg_sq", name);
    m.mul_(o.beta1).add_(g, 1.0 - o.beta1);
    v.mul_(o.beta2).addcmul_(g, g, 1.0 - o.beta2);
    const double bias1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
    const double bias2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
    auto direction = (m / bias1) / ((v / bias2).sqrt() + o.eps);
    if (o.weight_decay != 0 && decays(p)) direction.add_(p, o.weight_decay);
    // Trust ratio stays a tensor (no host synchronisation); 1 where either norm is 0.
    auto weight_norm = p.norm();
    auto update_norm = direction.norm();
    auto trust = torch::where(weight_norm.gt(0).logical_and(update_norm.gt(0)), weight_norm / update_norm,
                              torch::ones_like(weight_norm));
    p.sub_(direction * trust * lr);
  }
};

// Adafactor (Shazeer & Stern 2018) with an explicit learning rate and no first
// moment, as Hugging Face implements it: matrices keep only row and column means
// of the squared gradients, so the state is O(n + m) instead of O(n·m).
class Adafactor : public Optimizer {
 public:
  Adafactor(NamedTensors parameters, OptimizerOptions options) : Optimizer(std::move(parameters), std::move(options)) {
    for (auto& [name, p] : parameters_) {
      if (p.dim() >= 2) {
        add_state("exp_avg_sq_row", name, p.mean(-1));
        add_state("exp_avg_sq_col", name, p.mean(-2));
      } else {
        add_state("exp_avg_sq", name, p);
      }
    }
  }

 protected:
  static torch::Tensor rms(const torch::Tensor& x) { return x.pow(2).mean().sqrt(); }

  void update(const std::string& name, torch::Tensor& p, const torch::Tensor& g, double lr, int64_t t) override {
    const auto& o = options_;
    const double beta2t = 1.0 - std::pow(static_cast<double>(t), o.adafactor_decay_rate);
    auto squared = g.pow(2).add_(o.adafactor_eps1);
    torch::Tensor u;
    if (p.dim() >= 2) {
      auto& row = state("exp_avg_sq_row", name);
      auto& col = state("exp_avg_sq_col", name);
      row.mul_(beta2t).add_(squared.mean(-1), 1.0 - beta2t);
      col.mul_(beta2t).add_(squared.mean(-2), 1.0 - beta2t);
      // v̂ ≈ row·colᵀ / mean(row): the rank-1 reconstruction of the second moment
      auto row_factor = (row / row.mean(-1, /*keepdim=*/true)).rsqrt().unsqueeze(-1);
      auto col_factor = col.unsqueeze(-2).rsqrt();
      u = row_factor * col_factor * g;
    } else {
      auto& v = state("exp_avg_sq", name);
      v.mul_(beta2t).add_(squared, 1.0 - beta2t);
      u = v.rsqrt() * g;
    }
    // Clip the update's RMS to the threshold.
    u.div_((rms(u) / o.adafactor_clip).clamp_min(1.0));
    // Relative step size: scale lr by the parameter's own RMS (at least eps2).
    auto step_size = o.adafactor_scale_parameter ? rms(p).clamp_min(o.adafactor_eps2) * lr
                                                 : torch::full({}, lr, p.options());
    if (o.weight_decay != 0 && decays(p)) p.sub_(p * step_size * o.weight_decay);
    p.sub_(u * step_size);
  }
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(NamedTensors parameters, const OptimizerOptions& options) {
  if (options.kind == "adamw") return std::make_unique<AdamW>(std::move(parameters), options);
  if (options.kind == "lamb") return std::make_unique<Lamb>(std::move(parameters), options);
  if (options.kind == "adafactor") return std::make_unique<Adafactor>(std::move(parameters), options);
  throw std::invalid_argument("unknown optimizer '" + options.kind + "': use adamw, lamb or adafactor");
}

}  // namespace roformer
