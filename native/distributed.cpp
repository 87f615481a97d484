#include "distributed.h"

#include "compat_c10d.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace roformer {

namespace {

using std::chrono::milliseconds;

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string text_of(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

// The first line of an exception's message, without libtorch's C++ backtrace.
std::string brief(const std::exception& e) {
  std::string what = e.what();
  if (auto* torch_error = dynamic_cast<const c10::Error*>(&e)) what = torch_error->what_without_backtrace();
  const auto newline = what.find('\n');
  return newline == std::string::npos ? what : what.substr(0, newline);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

c10d::ReduceOp reduce_op(const std::string& op) {
  if (op == "sum") return c10d::ReduceOp::SUM;
  if (op == "min") return c10d::ReduceOp::MIN;
  if (op == "max") return c10d::ReduceOp::MAX;
  throw std::invalid_argument("unknown reduction '" + op + "': use sum, min or max");
}

std::string seconds(milliseconds t) {
  std::ostringstream out;
  out << static_cast<double>(t.count()) / 1000.0 << " s";
  return out.str();
}

std::string join_ranks(const std::vector<int64_t>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

constexpr milliseconds kHeartbeatInterval{1000};
constexpr milliseconds kHeartbeatWindow{3000};

}  // namespace

struct Distributed::Impl {
  DistributedOptions options;
  std::string backend;
  milliseconds timeout{60000};
  torch::Device device{torch::kCPU};
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<compat::CommGroup> group;
  int64_t gather_round = 0;

  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_wake;
  bool heartbeat_stop = false;

  std::string heartbeat_key(int64_t rank) const { return "roformer/heartbeat/" + std::to_string(rank); }

  compat::CommGroup& comm() {
    if (!group) throw std::runtime_error("the process group was shut down");
    return *group;
  }

  // Each second, this rank's counter in the store goes up (its own connection, its own thread).
  void start_heartbeat() {
    auto client = compat::tcp_store_options();
    client.port = static_cast<uint16_t>(options.master_port);
    client.isServer = false;
    client.waitWorkers = false;
    client.timeout = timeout;
    auto connection = c10::make_intrusive<c10d::TCPStore>(options.master_addr, client);
    heartbeat = std::thread([this, connection]() {
      const auto key = heartbeat_key(options.rank);
      std::unique_lock<std::mutex> lock(heartbeat_mutex);
      while (!heartbeat_stop) {
        try {
          connection->add(key, 1);
        } catch (...) {
          return;  // the store (rank 0) is gone: the next collective reports it
        }
        heartbeat_wake.wait_for(lock, kHeartbeatInterval, [this] { return heartbeat_stop; });
      }
    });
  }

  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> lock(heartbeat_mutex);
      heartbeat_stop = true;
    }
    heartbeat_wake.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }

  // The ranks whose heartbeat stopped (rank 0 when the store it hosts is unreachable).
  std::vector<int64_t> lost_ranks() {
    const auto world = options.world_size;
    std::vector<int64_t> before(world), after(world), lost;
    try {
      store->setTimeout(kHeartbeatWindow);
      for (int64_t r = 0; r < world; ++r) before[r] = store->add(heartbeat_key(r), 0);
      std::this_thread::sleep_for(kHeartbeatWindow);
      for (int64_t r = 0; r < world; ++r) after[r] = store->add(heartbeat_key(r), 0);
    } catch (...) {
      return options.rank == 0 ? std::vector<int64_t>{} : std::vector<int64_t>{0};
    }
    for (int64_t r = 0; r < world; ++r) {
      if (r != options.rank && after[r] == before[r]) lost.push_back(r);
    }
    return lost;
  }

  // A failed collective or store operation: the error names the lost ranks.
  [[noreturn]] void fail(const std::string& what, const std::exception& e) {
    const auto lost = lost_ranks();
    std::ostringstream out;
    out << "rank " << options.rank << ": " << what << " failed: ";
    if (!lost.empty()) {
      out << "lost rank" << (lost.size() > 1 ? "s " : " ") << join_ranks(lost)
          << " (no heartbeat for " << seconds(kHeartbeatWindow) << ": the process died or its machine is unreachable)"
          << " [" << brief(e) << "]";
    } else {
      out << brief(e) << " (every other rank still has a heartbeat: one may be stuck or much slower; the timeout is "
          << seconds(timeout) << ", --dist-timeout raises it)";
    }
    throw std::runtime_error(out.str());
  }

  void wait(const compat::WorkPtr& work, const std::string& what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }
};

Distributed::Distributed(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Distributed::~Distributed() { shutdown(); }

int64_t Distributed::rank() const { return impl_->options.rank; }
int64_t Distributed::world_size() const { return impl_->options.world_size; }
const std::string& Distributed::backend() const { return impl_->backend; }
const DistributedOptions& Distributed::options() const { return impl_->options; }

std::shared_ptr<Distributed> Distributed::create(const DistributedOptions& options) {
  const auto rank = options.rank, world = options.world_size;
  if (world < 1) throw std::invalid_argument("the world size must be >= 1, got " + std::to_string(world));
  if (rank < 0 || rank >= world) {
    throw std::invalid_argument("rank " + std::to_string(rank) + " is outside the world of " + std::to_string(world) +
                                " ranks (RANK must be in [0, WORLD_SIZE))");
  }
  if (options.master_port < 1 || options.master_port > 65535) {
    throw std::invalid_argument("the master port must be in 1..65535, got " + std::to_string(options.master_port));
  }
  if (!(options.timeout_seconds > 0)) throw std::invalid_argument("the distributed timeout must be > 0 seconds");

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->timeout = milliseconds(static_cast<int64_t>(options.timeout_seconds * 1000));
  const auto& timeout = impl->timeout;
  const std::string where = options.master_addr + ":" + std::to_string(options.master_port);

  std::string backend = options.backend;
  const bool cuda = options.device.rfind("cuda", 0) == 0;
  if (backend == "auto") backend = cuda ? "nccl" : "gloo";
  if (backend != "gloo" && backend != "nccl") throw std::invalid_argument("unknown backend '" + backend + "': use gloo or nccl");
#ifndef ROFORMER_HAS_NCCL
  if (backend == "nccl") {
    throw std::invalid_argument("the NCCL backend needs a CUDA build of libtorch 2.x with NCCL; this addon was built against libtorch " +
                                std::string(TORCH_VERSION) + " without it (use --backend gloo)");
  }
#endif
#ifndef ROFORMER_HAS_GLOO
  if (backend == "gloo") {
    throw std::invalid_argument("the Gloo backend needs Gloo's headers at build time (Debian: apt-get install libgloo-dev; "
                                "then npm run build:native)");
  }
#endif
  impl->backend = backend;
  if (backend == "nccl") impl->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(options.local_rank));

  // Rendezvous: rank 0 hosts the store.
  auto store_options = compat::tcp_store_options();
  store_options.port = static_cast<uint16_t>(options.master_port);
  store_options.isServer = rank == 0;
  store_options.numWorkers = static_cast<size_t>(world);
  store_options.waitWorkers = false;  // the check-in below says who is missing
  store_options.timeout = timeout;
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
  } catch (const std::exception& e) {
    if (rank == 0) {
      throw std::runtime_error("rank 0 could not host the rendezvous on port " + std::to_string(options.master_port) + ": " +
                               brief(e) + " (is the port busy, e.g. another run? choose another with --master-port or MASTER_PORT)");
    }
    throw std::runtime_error("rank " + std::to_string(rank) + " could not reach the master (rank 0) at " + where + " within " +
                             seconds(timeout) + ": " + brief(e) +
                             " (is rank 0 running? check --master-addr/--master-port or MASTER_ADDR/MASTER_PORT, and firewalls)");
  }
  auto& store = *impl->store;
  const std::string me = std::to_string(rank);
  try {
    if (store.add("roformer/claim/" + me, 1) > 1) {
      throw std::invalid_argument("two processes were started as rank " + me + ": every rank (RANK) must be unique");
    }
    store.set("roformer/world/" + me, bytes_of(std::to_string(world)));
    if (rank == 0) {
      std::string verdict = "ok";
      for (int64_t r = 1; r < world && verdict == "ok"; ++r) {
        const auto key = "roformer/world/" + std::to_string(r);
        try {
          store.wait({key}, timeout);
        } catch (const std::exception&) {
          std::vector<int64_t> missing;
          for (int64_t m = 1; m < world; ++m) {
            if (!store.check({"roformer/world/" + std::to_string(m)})) missing.push_back(m);
          }
          verdict = "rendezvous at " + where + " timed out after " + seconds(timeout) + ": rank" +
                    (missing.size() > 1 ? "s " : " ") + join_ranks(missing) + " of " + std::to_string(world) +
                    " did not join";
          break;
        }
        const auto theirs = text_of(store.get(key));
        if (theirs != std::to_string(world)) {
          verdict = "rank " + std::to_string(r) + " was started with world size " + theirs + " but rank 0 with " +
                    std::to_string(world) + " (WORLD_SIZE, or --nproc-per-node × --nnodes, must agree on every rank)";
        }
      }
      store.set("roformer/verdict", bytes_of(verdict));
      if (verdict != "ok") {
        // The store lives in this process: give the ranks that joined a moment to read why.
        for (int64_t r = 1; r < world; ++r) {
          if (!store.check({"roformer/world/" + std::to_string(r)})) continue;
          try {
            store.wait({"roformer/ack/" + std::to_string(r)}, std::min(timeout, milliseconds(5000)));
          } catch (const std::exception&) {
          }
        }
        throw std::runtime_error(verdict);
      }
    } else {
      const auto theirs = text_of(store.get("roformer/world/0"));
      store.set("roformer/ack/" + me, bytes_of("1"));
      if (theirs != std::to_string(world)) {
        throw std::runtime_error("rank " + me + " was started with world size " + std::to_string(world) + " but rank 0 with " +
                                 theirs + " (WORLD_SIZE, or --nproc-per-node × --nnodes, must agree on every rank)");
      }
      const auto verdict = text_of(store.get("roformer/verdict"));
      if (verdict != "ok") throw std::runtime_error("rank 0 stopped the rendezvous: " + verdict);
    }
  } catch (const c10::Error& e) {
    throw std::runtime_error("rank " + me + ": rendezvous at " + where + " failed: " + brief(e) +
                             " (a rank did not join within " + seconds(timeout) + ", or rank 0 stopped)");
  }

  // The backend; its own keys live under a prefix.
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("roformer/pg", impl->store);
  try {
    if (backend == "gloo") {
#ifdef ROFORMER_HAS_GLOO
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
      if (interface && *interface) {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (is_loopback(options.master_addr)) {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      gloo_options->threads = 2;
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, static_cast<int>(rank), static_cast<int>(world),
                                                                 gloo_options);
#endif
    } else {
#ifdef ROFORMER_HAS_NCCL
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, static_cast<int>(rank), static_cast<int>(world),
                                                                 nccl_options);
#endif
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + me + ": connecting the ranks (" + backend + ") failed: " + brief(e));
  }
  impl->start_heartbeat();
  return std::shared_ptr<Distributed>(new Distributed(std::move(impl)));
}

void Distributed::shutdown() {
  if (!impl_) return;
  impl_->stop_heartbeat();
  impl_->group.reset();
  impl_->store.reset();  // rank 0: frees the port for a later run in this process
}

void Distributed::broadcast_(std::vector<torch::Tensor> tensors, int64_t root) {
  torch::NoGradGuard no_grad;
  // One flat buffer per dtype.
  std::map<torch::ScalarType, std::vector<torch::Tensor>> by_dtype;
  for (auto& t : tensors) by_dtype[t.scalar_type()].push_back(t);
  for (auto& [dtype, group] : by_dtype) {
    std::vector<torch::Tensor> flat_parts;
    for (auto& t : group) flat_parts.push_back(t.detach().reshape(-1).to(impl_->device));
    std::vector<torch::Tensor> flat{torch::cat(flat_parts)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    impl_->wait(impl_->comm().broadcast(flat, options), "broadcasting the weights from rank " + std::to_string(root));
    int64_t offset = 0;
    for (auto& t : group) {
      const auto n = t.numel();
      t.detach().copy_(flat[0].narrow(0, offset, n).view(t.sizes()));
      offset += n;
    }
  }
}

void Distributed::all_reduce_(torch::Tensor& tensor, const std::string& op) {
  std::vector<torch::Tensor> tensors{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = reduce_op(op);
  impl_->wait(impl_->comm().allreduce(tensors, options), "an all-reduce (" + op + ")");
}

std::vector<double> Distributed::all_reduce(const std::vector<double>& values, const std::string& op) {
  auto tensor = torch::tensor(values, torch::kDouble).to(impl_->device);
  all_reduce_(tensor, op);
  tensor = tensor.to(torch::kCPU).contiguous();
  const double* data = tensor.data_ptr<double>();
  return std::vector<double>(data, data + tensor.numel());
}

std::vector<std::string> Distributed::all_gather(const std::string& value) {
  if (!impl_->store) throw std::runtime_error("allGather: the process group was shut down");
  const auto round = "roformer/gather/" + std::to_string(impl_->gather_round++) + "/";
  std::vector<std::string> result(static_cast<size_t>(world_size()));
  try {
    impl_->store->setTimeout(impl_->timeout);
    impl_->store->set(round + std::to_string(rank()), bytes_of(value));
    for (int64_t r = 0; r < world_size(); ++r) {
      result[static_cast<size_t>(r)] = r == rank() ? value : text_of(impl_->store->get(round + std::to_string(r)));
    }
  } catch (const std::exception& e) {
    impl_->fail("gathering a value from every rank", e);
  }
  return result;
}

void Distributed::barrier() { impl_->wait(impl_->comm().barrier(), "a barrier"); }

// ---------------------------------------------------------------------------
// GradientReducer
// ---------------------------------------------------------------------------

struct GradientReducer::State {
  std::shared_ptr<Distributed> distributed;
  std::vector<torch::Tensor> parameters;
  struct Slot {
    size_t bucket;
    int64_t offset;
  };
  std::vector<Slot> slots;  // by parameter
  struct Bucket {
    torch::Tensor flat;
    std::vector<size_t> parameters;
    size_t pending = 0;
    compat::WorkPtr work;
  };
  std::vector<Bucket> buckets;
  std::vector<char> fired;
  size_t next_launch = 0;
  bool armed = false;
  std::string launch_error;
  std::mutex mutex;
  // Keeps the gradient accumulators (and so the hooks on them) alive.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;

  torch::Tensor slice(size_t index) {
    const auto& slot = slots[index];
    return buckets[slot.bucket].flat.narrow(0, slot.offset, parameters[index].numel());
  }

  // Under `mutex`: launches, in bucket order, every bucket whose gradients are all in.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      auto& bucket = buckets[next_launch++];
      try {
        std::vector<torch::Tensor> tensors{bucket.flat};
        c10d::AllreduceOptions options;
        options.reduceOp = c10d::ReduceOp::SUM;
        bucket.work = distributed->impl().comm().allreduce(tensors, options);
      } catch (const std::exception& e) {
        if (launch_error.empty()) launch_error = brief(e);
      }
    }
  }

  // The gradient accumulator of parameter `index` has run: its .grad() is final for this backward.
  void ready(size_t index) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || fired[index]) return;
    fired[index] = 1;
    torch::NoGradGuard no_grad;
    const auto& grad = parameters[index].grad();
    if (grad.defined()) {
      slice(index).copy_(grad.reshape(-1));
    } else {
      slice(index).zero_();
    }
    if (--buckets[slots[index].bucket].pending == 0) launch_ready();
  }
};

namespace {

class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::weak_ptr<GradientReducer::State> state, size_t index) : state_(std::move(state)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto state = state_.lock()) state->ready(index_);
    return outputs;
  }

 private:
  std::weak_ptr<GradientReducer::State> state_;
  size_t index_;
};

}  // namespace

GradientReducer::GradientReducer(std::shared_ptr<Distributed> distributed, std::vector<torch::Tensor> parameters,
                                 int64_t bucket_bytes, int64_t first_bucket_bytes)
    : state_(std::make_shared<State>()) {
  auto& s = *state_;
  s.distributed = std::move(distributed);
  s.parameters = std::move(parameters);
  s.slots.resize(s.parameters.size());
  s.fired.assign(s.parameters.size(), 0);
  // Buckets in reverse parameter order: the last layers' gradients come first in backward.
  int64_t used = 0;
  for (size_t k = s.parameters.size(); k-- > 0;) {
    const auto& p = s.parameters[k];
    const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    const int64_t cap = s.buckets.size() <= 1 ? first_bucket_bytes : bucket_bytes;
    const bool fits = !s.buckets.empty() && s.buckets.back().flat.scalar_type() == p.scalar_type() &&
                      (used + bytes <= cap || s.buckets.back().parameters.empty());
    if (!fits) {
      s.buckets.push_back({});
      s.buckets.back().flat = torch::empty({0}, p.options().requires_grad(false));
      used = 0;
    }
    auto& bucket = s.buckets.back();
    s.slots[k] = {s.buckets.size() - 1, used / static_cast<int64_t>(p.element_size())};
    bucket.parameters.push_back(k);
    used += bytes;
    bucket.flat = torch::empty({used / static_cast<int64_t>(p.element_size())}, p.options().requires_grad(false));
  }
  std::weak_ptr<State> weak = state_;
  for (size_t k = 0; k < s.parameters.size(); ++k) {
    auto accumulator = torch::autograd::impl::grad_accumulator(s.parameters[k]);
    if (!accumulator) throw std::invalid_argument("GradientReducer: a parameter is not a leaf that requires grad");
    accumulator->add_post_hook(std::make_unique<ReadyHook>(weak, k));
    s.accumulators.push_back(std::move(accumulator));
  }
}

GradientReducer::~GradientReducer() = default;

int64_t GradientReducer::bucket_count() const { return static_cast<int64_t>(state_->buckets.size()); }

void GradientReducer::arm() {
  auto& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  std::fill(s.fired.begin(), s.fired.end(), 0);
  for (auto& bucket : s.buckets) {
    bucket.pending = bucket.parameters.size();
    bucket.work.reset();
  }
  s.next_launch = 0;
  s.launch_error.clear();
  s.armed = true;
}

void GradientReducer::finish() {
  auto& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    torch::NoGradGuard no_grad;
    // Parameters whose accumulator did not run in this backward (not used, or no gradient).
    for (size_t k = 0; k < s.parameters.size(); ++k) {
      if (s.fired[k]) continue;
      s.fired[k] = 1;
      const auto& grad = s.parameters[k].grad();
      if (grad.defined()) {
        s.slice(k).copy_(grad.reshape(-1));
      } else {
        s.slice(k).zero_();
      }
      --s.buckets[s.slots[k].bucket].pending;
    }
    s.launch_ready();
    s.armed = false;
  }
  if (!s.launch_error.empty()) {
    throw std::runtime_error("rank " + std::to_string(s.distributed->rank()) +
                             ": starting the all-reduce of the gradients failed: " + s.launch_error);
  }
  for (auto& bucket : s.buckets) s.distributed->impl().wait(bucket.work, "the all-reduce of the gradients");
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < s.parameters.size(); ++k) {
    auto grad = s.parameters[k].grad();
    if (grad.defined()) grad.copy_(s.slice(k).view(grad.sizes()));
  }
  for (auto& bucket : s.buckets) bucket.work.reset();
}

}  // namespace roformer
