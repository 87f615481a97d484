// The trainer's state for checkpoints: the heads' weights, the optimiser's moments,
// the random generators' states and the step counters (trainer.h).
#include "trainer.h"

#include <ATen/Context.h>

#include <sstream>
#include <stdexcept>

namespace roformer {

namespace {

// Random generators whose state a checkpoint keeps: CPU, and every CUDA device.
std::vector<std::pair<std::string, at::Generator>> generators() {
  std::vector<std::pair<std::string, at::Generator>> result{{"rng.cpu", at::detail::getDefaultCPUGenerator()}};
  if (torch::cuda::is_available()) {
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
      torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
      result.emplace_back("rng." + device.str(), at::globalContext().defaultGenerator(device));
    }
  }
  return result;
}

}  // namespace

NamedTensors Trainer::head_parameters() const {
  NamedTensors result;
  for (const auto& item : heads_->named_parameters()) result.emplace_back("heads." + item.key(), item.value().detach());
  return result;
}

void Trainer::load_head_parameters(const std::map<std::string, torch::Tensor>& saved) {
  std::map<std::string, torch::Tensor> ours;
  for (const auto& [name, tensor] : head_parameters()) ours[name] = tensor;
  std::vector<std::string> problems;
  for (const auto& [name, tensor] : saved) {
    auto it = ours.find(name);
    if (it == ours.end()) {
      problems.push_back("unexpected head tensor " + name);
    } else if (it->second.sizes() != tensor.sizes()) {
      std::ostringstream out;
      out << "head tensor " << name << " has shape " << tensor.sizes() << " but the head expects " << it->second.sizes();
      problems.push_back(out.str());
    } else if (!tensor.is_floating_point()) {
      problems.push_back("head tensor " + name + " is " + dtype_name(tensor.scalar_type()) + ", not floating point");
    }
  }
  for (const auto& [name, tensor] : ours) {
    if (!saved.count(name)) problems.push_back("missing head tensor " + name);
  }
  if (!problems.empty()) {
    std::string message = "head weights do not match this trainer's heads: ";
    for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw std::invalid_argument(message);
  }
  std::lock_guard<std::mutex> lock(*model_mutex_);
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : ours) tensor.copy_(saved.at(name));
}

std::map<std::string, torch::Tensor> Trainer::state_tensors() const {
  auto result = random_state();
  for (const auto& [key, tensor] : optimizer_->state()) result[key] = tensor.detach().clone();
  return result;
}

void Trainer::load_state_tensors(const std::map<std::string, torch::Tensor>& saved) {
  std::map<std::string, torch::Tensor> optimizer_state;
  for (const auto& [key, tensor] : saved) {
    if (key.rfind("rng.", 0) != 0) optimizer_state[key] = tensor;
  }
  std::lock_guard<std::mutex> lock(*model_mutex_);
  // Check the generator states first: nothing changes unless everything can.
  auto gens = generators();
  for (auto& [key, generator] : gens) {
    auto it = saved.find(key);
    if (it == saved.end()) continue;  // e.g. a CPU checkpoint resumed on a GPU machine
    std::lock_guard<std::mutex> generator_lock(generator.mutex());
    const auto current = generator.get_state();
    require(it->second.scalar_type() == torch::kByte && it->second.sizes() == current.sizes(),
            "random generator state " + key + " has the wrong size or dtype");
  }
  optimizer_->load_state(optimizer_state);
  for (auto& [key, generator] : gens) {
    auto it = saved.find(key);
    if (it == saved.end()) continue;
    std::lock_guard<std::mutex> generator_lock(generator.mutex());
    generator.set_state(it->second);
  }
}

std::map<std::string, torch::Tensor> Trainer::random_state() const {
  std::map<std::string, torch::Tensor> result;
  for (auto& [key, generator] : generators()) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    result[key] = generator.get_state();
  }
  return result;
}

void Trainer::load_random_state(const std::map<std::string, torch::Tensor>& saved) {
  for (auto& [key, generator] : generators()) {
    auto it = saved.find(key);
    if (it == saved.end()) continue;
    std::lock_guard<std::mutex> lock(generator.mutex());
    require(it->second.scalar_type() == torch::kByte && it->second.sizes() == generator.get_state().sizes(),
            "random generator state " + key + " has the wrong size or dtype");
    generator.set_state(it->second);
  }
}

TrainerCounters Trainer::counters() const { return counters_; }

void Trainer::set_counters(const TrainerCounters& counters) {
  require(counters.step >= 0 && counters.skipped_steps >= 0 && counters.loss_scale > 0 && counters.growth_tracker >= 0,
          "invalid trainer counters");
  counters_ = counters;
  optimizer_->set_steps(counters.step);
}

}  // namespace roformer
