// How the tasks of one multi-task step combine their gradients
// (TrainerOptions::gradient_normalization):
//
//   none     g = Σ g_task                  the gradient of the plain sum of the task losses
//   unit     g = Σ g_task / ‖g_task‖       each task's gradient scaled to unit global norm:
//                                          minimise Σ L_i / ‖∇L_i‖ with the norms held constant
//   pareto   g = Σ α_task g_task           α on the simplex minimising ‖Σ α_i ∇L_i‖²
//                                          (the min-norm / Frank–Wolfe solution)
//
// The trainer (trainer.cpp) runs each task's backward; this file only weighs and sums.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace roformer {

enum class GradientNormalization { none, unit, pareto };

// "none", "unit" or "pareto"; anything else is an std::invalid_argument naming the choices.
GradientNormalization parse_gradient_normalization(const std::string& name);

// ‖(g_1, …, g_n)‖₂ over all tensors, on their device, in float32.
torch::Tensor global_norm(const std::vector<torch::Tensor>& grads);

// argmin over the simplex of αᵀ G α for a Gram matrix G (Frank–Wolfe with exact line search).
std::vector<double> min_norm_weights(const std::vector<std::vector<double>>& gram);

// Weighs and sums the tasks' gradients of one step under "unit" or "pareto", one task
// at a time, so that the trainer can reuse the same gradient buffers for every task.
class TaskGradientCombiner {
 public:
  explicit TaskGradientCombiner(GradientNormalization normalization);

  // After one task's backward: `grads` holds that task's gradient alone (unscaled), of
  // global norm `norm`. Returns the weight it enters the sum with (pareto: 1 until
  // combine_into() has seen every task).
  double add_task(const std::vector<torch::Tensor>& grads, double norm);

  // Overwrites `grads` with the combined gradient. Pareto: returns each task's final
  // weight, in the order they were added; unit: empty (add_task's weights stand).
  std::vector<double> combine_into(std::vector<torch::Tensor>& grads);

 private:
  GradientNormalization normalization_;
  std::vector<torch::Tensor> weighted_sum_;                // unit: Σ g / ‖g‖ so far
  std::vector<std::vector<torch::Tensor>> task_gradients_;  // pareto: each task's g
};

}  // namespace roformer
