#include "gradient_normalization.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace roformer {

GradientNormalization parse_gradient_normalization(const std::string& name) {
  if (name == "none") return GradientNormalization::none;
  if (name == "unit") return GradientNormalization::unit;
  if (name == "pareto") return GradientNormalization::pareto;
  throw std::invalid_argument("unknown gradientNormalization '" + name + "': use none, unit or pareto");
}

torch::Tensor global_norm(const std::vector<torch::Tensor>& grads) {
  // Each gradient's norm in one multi-tensor call, then the norm of those norms.
  auto norms = at::_foreach_norm(grads, 2);
  for (auto& n : norms) n = n.to(torch::kFloat);
  return torch::stack(norms).norm(2);
}

std::vector<double> min_norm_weights(const std::vector<std::vector<double>>& gram) {
  const size_t n = gram.size();
  std::vector<double> alpha(n, 1.0 / static_cast<double>(n));
  for (int iteration = 0; iteration < 10000; ++iteration) {
    // G α, and the vertex e_t along which ‖Σ α g‖² falls fastest
    std::vector<double> g_alpha(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) g_alpha[i] += gram[i][j] * alpha[j];
    }
    size_t t = 0;
    for (size_t i = 1; i < n; ++i) {
      if (g_alpha[i] < g_alpha[t]) t = i;
    }
    double aga = 0;
    for (size_t i = 0; i < n; ++i) aga += alpha[i] * g_alpha[i];
    const double age = g_alpha[t], ege = gram[t][t];
    // Frank–Wolfe gap αᵀGα − (Gα)_t: zero at the optimum.
    if (aga - age <= 1e-12 * std::max(aga, 1e-30)) break;
    // Exact line search on (1−γ)²·aga + 2γ(1−γ)·age + γ²·ege over γ ∈ [0, 1].
    const double curvature = aga - 2 * age + ege;
    const double gamma = curvature > 0 ? std::clamp((aga - age) / curvature, 0.0, 1.0) : 1.0;
    for (size_t i = 0; i < n; ++i) alpha[i] *= 1 - gamma;
    alpha[t] += gamma;
  }
  return alpha;
}

namespace {

// The Gram matrix G_ij = ⟨g_i, g_j⟩ of the task gradients (each a list of tensors), in
// float64, read back to the host in one transfer.
std::vector<std::vector<double>> gram_matrix(const std::vector<std::vector<torch::Tensor>>& task_gradients) {
  const size_t n = task_gradients.size();
  std::vector<torch::Tensor> dots;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i; j < n; ++j) {
      std::vector<torch::Tensor> parts;
      for (size_t k = 0; k < task_gradients[i].size(); ++k) {
        parts.push_back(torch::dot(task_gradients[i][k].flatten(), task_gradients[j][k].flatten()).to(torch::kDouble));
      }
      dots.push_back(torch::stack(parts).sum());
    }
  }
  auto host = torch::stack(dots).to(torch::kCPU);
  std::vector<std::vector<double>> gram(n, std::vector<double>(n));
  for (size_t i = 0, d = 0; i < n; ++i) {
    for (size_t j = i; j < n; ++j, ++d) gram[i][j] = gram[j][i] = host[static_cast<int64_t>(d)].item<double>();
  }
  return gram;
}

bool all_finite(const std::vector<std::vector<double>>& matrix) {
  for (const auto& row : matrix) {
    if (!std::all_of(row.begin(), row.end(), [](double x) { return std::isfinite(x); })) return false;
  }
  return true;
}

}  // namespace

TaskGradientCombiner::TaskGradientCombiner(GradientNormalization normalization) : normalization_(normalization) {
  if (normalization == GradientNormalization::none) {
    throw std::logic_error("TaskGradientCombiner: 'none' sums the gradients in place, with no combiner");
  }
}

double TaskGradientCombiner::add_task(const std::vector<torch::Tensor>& grads, double norm) {
  torch::NoGradGuard no_grad;
  if (normalization_ == GradientNormalization::pareto) {
    std::vector<torch::Tensor> copy;
    for (const auto& g : grads) copy.push_back(g.clone());
    task_gradients_.push_back(std::move(copy));
    return 1.0;
  }
  // Unit. Non-finite norms keep weight 1, so inf/NaN reach the step's check and skip it.
  const double weight = !std::isfinite(norm) ? 1.0 : norm > 0 ? 1.0 / norm : 0.0;
  if (weighted_sum_.empty()) {
    for (const auto& g : grads) weighted_sum_.push_back(g * weight);
  } else {
    at::_foreach_add_(weighted_sum_, grads, weight);
  }
  return weight;
}

std::vector<double> TaskGradientCombiner::combine_into(std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  if (normalization_ == GradientNormalization::unit) {
    for (size_t k = 0; k < grads.size(); ++k) grads[k].copy_(weighted_sum_[k]);
    return {};
  }
  // Pareto: α on the simplex minimising ‖Σ α_i g_i‖², from the Gram matrix of the task gradients.
  const size_t n = task_gradients_.size();
  const auto gram = gram_matrix(task_gradients_);
  // Non-finite gradients: equal weights, so the inf/NaN reach the step's check.
  const auto weights = all_finite(gram) ? min_norm_weights(gram) : std::vector<double>(n, 1.0 / static_cast<double>(n));
  for (auto& g : grads) g.zero_();
  for (size_t i = 0; i < n; ++i) at::_foreach_add_(grads, task_gradients_[i], weights[i]);
  return weights;
}

}  // namespace roformer
