// Data-parallel training on libtorch's c10d: the process group of one rank, and the
// gradient reducer the Trainer uses.
//
//   rendezvous   TCPStore at MASTER_ADDR:MASTER_PORT (rank 0 hosts it); every rank
//                checks in with its world size, so a duplicate rank, a mismatched world
//                size, a busy port or an unreachable master is a clear error
//   backend      Gloo on the CPU; NCCL for CUDA builds of libtorch 2.x (compile-guarded)
//   heartbeat    every rank bumps a counter in the store each second; when a collective
//                fails, the ranks whose counter stopped are named in the error
//   reducer      gradients flattened into buckets (reverse parameter order, ~the order
//                backward produces them); during the step's last backward, a bucket is
//                all-reduced asynchronously as soon as all its gradients are accumulated
//                (hooks on the parameters' gradient accumulators), buckets always in the
//                same order on every rank; finish() waits and writes the sums back
//
// Pure libtorch (no Node-API); everything runs on the executor thread except the
// autograd hooks (the backward's thread) and the heartbeat thread.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace roformer {

struct DistributedOptions {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  // Rendezvous, collectives and the store: how long to wait for the other ranks.
  double timeout_seconds = 60;
  // "gloo", "nccl" or "auto" (NCCL when `device` is CUDA and libtorch has it, else Gloo).
  std::string backend = "auto";
  std::string device = "cpu";
};

class Distributed {
 public:
  // Rendezvous with the other ranks and set up the backend: blocks until every rank has
  // joined (or throws after the timeout, naming the ranks that did not).
  static std::shared_ptr<Distributed> create(const DistributedOptions& options);
  ~Distributed();

  int64_t rank() const;
  int64_t world_size() const;
  const std::string& backend() const;
  const DistributedOptions& options() const;

  // Blocking collectives. A failure throws an error that names the lost ranks, if any.
  void broadcast_(std::vector<torch::Tensor> tensors, int64_t root = 0);  // in place, any dtype mix
  void all_reduce_(torch::Tensor& tensor, const std::string& op = "sum");  // in place
  std::vector<double> all_reduce(const std::vector<double>& values, const std::string& op = "sum");
  // Every rank's string, by rank (through the store).
  std::vector<std::string> all_gather(const std::string& value);
  void barrier();

  // Stops the heartbeat and drops the backend; later calls throw.
  void shutdown();

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Distributed(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Sums the gradients of `parameters` over the ranks (see the top of this file).
class GradientReducer {
 public:
  GradientReducer(std::shared_ptr<Distributed> distributed, std::vector<torch::Tensor> parameters,
                  int64_t bucket_bytes = 8 << 20, int64_t first_bucket_bytes = 1 << 20);
  ~GradientReducer();
  // Before the step's last backward: from now on a bucket whose gradients are all
  // accumulated is all-reduced at once, while the backward goes on.
  void arm();
  // After that backward: reduces the rest (parameters without a gradient count as zero),
  // waits for every bucket and writes the sums into the defined .grad()s.
  void finish();
  int64_t bucket_count() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace roformer
