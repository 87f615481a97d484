// The addon's entry point: registers the classes and the runtime functions
// (versions, devices, threads, seeding) that the TypeScript layer builds on.
#include "compat.h"
#include "executor.h"
#include "module_handle.h"
#include "napi_util.h"
#include "tensor_handle.h"
#include "trainer_handle.h"
#include "distributed_handle.h"
#include "kernels/fused_check.h"
#include "op_count.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

namespace roformer::js {

namespace {

// The intra-op thread count every thread that runs torch code should use.
std::atomic<int> desired_threads{0};

// Cores this process may run on (respects taskset / cgroup CPU sets on Linux).
int available_cores() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

// ROFORMER_NUM_THREADS overrides; otherwise one thread per available core
// (Debian's libtorch would otherwise run on a single thread here).
int default_threads() {
  if (const char* env = std::getenv("ROFORMER_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return available_cores();
}

}  // namespace

void apply_thread_settings() {
  const int n = desired_threads.load();
  if (n > 0 && at::get_num_threads() != n) at::set_num_threads(n);
}

void submit_job(Napi::Env env, Job* job) {
  auto& data = addon_data(env);
  // Keep the event loop alive while anything is pending, as libuv's own requests do.
  if (data.pending_jobs++ == 0) data.channel->completions.Ref(env);
  Executor::instance().submit([channel = data.channel, job]() {
    job->run();
    {
      // The hand-over is the executor's last touch of the channel: once the job
      // settles, the environment may end at any moment.
      std::lock_guard<std::mutex> lock(channel->mutex);
      if (channel->open && channel->completions.BlockingCall(job) == napi_ok) return;
    }
    delete job;  // the environment is gone: nobody to settle
  });
}

void settle_completed_job(Napi::Env env, Napi::Function, void*, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (env == nullptr) return;  // environment shutting down
  auto& data = addon_data(env);
  if (--data.pending_jobs == 0) data.channel->completions.Unref(env);
  owned->settle(env);
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      throw std::invalid_argument("device '" + name + "' was requested, but CUDA is not available: this libtorch (" +
                                  compat::libtorch_version() +
                                  ") was built without CUDA, or no NVIDIA GPU is visible. Use device 'cpu'.");
    }
    torch::Device device(name);
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (device.has_index() && device.index() >= count) {
      throw std::invalid_argument("device '" + name + "' does not exist: " + std::to_string(count) +
                                  " CUDA device(s) visible");
    }
    return device;
  }
  throw std::invalid_argument("unknown device '" + name + "': use 'cpu', 'cuda' or 'cuda:N'");
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat;
  if (name == "float64") return torch::kDouble;
  if (name == "float16") return torch::kHalf;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "int32") return torch::kInt;
  if (name == "int64") return torch::kLong;
  if (name == "int16") return torch::kShort;
  if (name == "int8") return torch::kChar;
  if (name == "uint8") return torch::kByte;
  if (name == "bool") return torch::kBool;
  throw std::invalid_argument("unknown dtype '" + name +
                              "': use float32, float64, float16, bfloat16, int32, int64, int16, int8, uint8 or bool");
}

namespace {

Napi::Value runtime_info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    apply_thread_settings();
    auto result = Napi::Object::New(env);
    result.Set("libtorchVersion", compat::libtorch_version());
    result.Set("cudaAvailable", torch::cuda::is_available());
    result.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
    result.Set("fusedAttention", compat::kHasFusedAttention);
    // The data-parallel backends built in (CMakeLists.txt finds Gloo's and NCCL's headers).
    auto backends = Napi::Array::New(env);
#ifdef ROFORMER_WITH_GLOO
    backends.Set(backends.Length(), "gloo");
#endif
#ifdef ROFORMER_WITH_NCCL
    backends.Set(backends.Length(), "nccl");
#endif
    result.Set("distributedBackends", backends);
    result.Set("numThreads", at::get_num_threads());
    result.Set("availableCores", available_cores());
    result.Set("parallelInfo", at::get_parallel_info());
    result.Set("buildConfig", at::show_config());
    return result;
  });
}

Napi::Value set_num_threads(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
      throw_type_error(env, "setNumThreads(n): n must be a positive integer");
    }
    desired_threads = info[0].As<Napi::Number>().Int32Value();
    apply_thread_settings();
    return env.Undefined();
  });
}

// Waits for queued work on a device: benchmarks read their clocks after it.
Napi::Value synchronize(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto device = parse_device(info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "cpu");
    if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
    return env.Undefined();
  });
}

// Peak bytes allocated on a CUDA device since the last reset; resetPeakMemory starts over.
Napi::Value peak_memory(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto device = parse_device(info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "cpu");
    if (!device.is_cuda()) return Napi::Number::New(env, 0);
    const int index = device.has_index() ? device.index() : 0;
    if (info.Length() > 1 && info[1].ToBoolean().Value()) compat::cuda_reset_peak(index);
    return Napi::Number::New(env, static_cast<double>(compat::cuda_peak_allocated(index)));
  });
}

// Seconds per n×n×n matrix product in `dtype` on `device`, timed over `iters` runs
// after a warm-up: the peak the benchmark's model-FLOPs utilisation is measured against.
Napi::Value matmul_seconds(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsString() || !info[3].IsNumber()) {
      throw_type_error(env, "matmulSeconds(n, dtype, device, iters)");
    }
    const int64_t n = info[0].As<Napi::Number>().Int64Value();
    const auto dtype = parse_dtype(info[1].As<Napi::String>().Utf8Value());
    const auto device = parse_device(info[2].As<Napi::String>().Utf8Value());
    const int64_t iters = std::max<int64_t>(1, info[3].As<Napi::Number>().Int64Value());
    apply_thread_settings();
    torch::NoGradGuard no_grad;
    auto options = torch::TensorOptions().dtype(dtype).device(device);
    auto a = torch::randn({n, n}, options), b = torch::randn({n, n}, options), c = torch::empty({n, n}, options);
    auto sync = [&] { if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1); };
    torch::matmul_out(c, a, b);
    sync();
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) torch::matmul_out(c, a, b);
    sync();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return Napi::Number::New(env, seconds / static_cast<double>(iters));
  });
}

// Returns freed memory to the system now (after a checkpoint copied model-sized
// buffers on the JS thread, glibc would otherwise keep them in its arena).
Napi::Value release_memory(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    compat::release_freed_memory();
    return info.Env().Undefined();
  });
}

// opCountStart({ parents?, dtypes? }) / opCountStop(): the libtorch ops run in between, on any thread, by name
// (op_count.h: the innermost working ops, about one kernel launch each on CUDA). The caller
// starts and stops with no work in flight on the executor.
Napi::Value op_count_start(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    int parents = 0;
    bool dtypes = false;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      const auto o = require_object(info[0], "opCountStart options");
      parents = static_cast<int>(integer_field(o, "parents", 0, "opCountStart: "));
      require(parents >= 0 && parents <= 8, "opCountStart: parents must be in [0, 8]");
      dtypes = boolean_field(o, "dtypes", false);
    }
    op_count::start(parents, dtypes);
    return info.Env().Undefined();
  });
}
Napi::Value op_count_stop(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto counts = op_count::stop();
    auto out = Napi::Array::New(env, counts.size());
    for (size_t i = 0; i < counts.size(); ++i) {
      auto entry = Napi::Object::New(env);
      entry.Set("phase", counts[i].phase);
      entry.Set("op", counts[i].op);
      entry.Set("count", Napi::Number::New(env, static_cast<double>(counts[i].count)));
      entry.Set("selfSeconds", Napi::Number::New(env, counts[i].self_seconds));
      out.Set(static_cast<uint32_t>(i), entry);
    }
    return out;
  });
}

// The host allocator's figures (bytes in use, cached, peak; cache hits and misses).
Napi::Value host_cache(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const auto s = host_cache_stats();
    auto out = Napi::Object::New(info.Env());
    out.Set("enabled", s.enabled);
    out.Set("liveBytes", static_cast<double>(s.live_bytes));
    out.Set("cachedBytes", static_cast<double>(s.cached_bytes));
    out.Set("peakLiveBytes", static_cast<double>(s.peak_live_bytes));
    out.Set("hits", static_cast<double>(s.hits));
    out.Set("misses", static_cast<double>(s.misses));
    return out;
  });
}

Napi::Value manual_seed(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw_type_error(env, "manualSeed(seed: number)");
    torch::manual_seed(info[0].As<Napi::Number>().Int64Value());
    return env.Undefined();
  });
}

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  // Unbounded queue, one "thread" (this environment's own hold); unreferenced while idle.
  data->channel = std::make_shared<CompletionChannel>();
  data->channel->completions = Completions::New(env, "roformer-v2", 0, 1);
  data->channel->completions.Unref(env);
  // Registered after the thread-safe function, so it runs before Node destroys it.
  env.AddCleanupHook([channel = data->channel]() {
    std::lock_guard<std::mutex> lock(channel->mutex);
    channel->open = false;
  });

  auto tensor_class = TensorHandle::define_class(env);
  data->tensor_constructor = Napi::Persistent(tensor_class);
  auto module_class = ModuleHandle::define_class(env);
  data->module_constructor = Napi::Persistent(module_class);
  auto trainer_class = TrainerHandle::define_class(env);
  data->trainer_constructor = Napi::Persistent(trainer_class);
  auto process_group_class = ProcessGroupHandle::define_class(env);
  data->process_group_constructor = Napi::Persistent(process_group_class);

  compat::tune_malloc();
  install_host_allocator();
  desired_threads = default_threads();
  apply_thread_settings();

  exports.Set("Tensor", tensor_class);
  exports.Set("NativeModule", module_class);
  exports.Set("NativeTrainer", trainer_class);
  exports.Set("NativeProcessGroup", process_group_class);
  exports.Set("createProcessGroup", Napi::Function::New<ProcessGroupHandle::create>(env, "createProcessGroup"));
  exports.Set("createTrainer", Napi::Function::New<TrainerHandle::create>(env, "createTrainer"));
  exports.Set("optimizerSteps", Napi::Function::New<TrainerHandle::optimizer_steps>(env, "optimizerSteps"));
  exports.Set("zlprLoss", Napi::Function::New<TrainerHandle::zlpr_loss>(env, "zlprLoss"));
  exports.Set("tensorFromArray", Napi::Function::New<TensorHandle::from_array>(env, "tensorFromArray"));
  exports.Set("tensorFromBytes", Napi::Function::New<TensorHandle::from_bytes>(env, "tensorFromBytes"));
  exports.Set("createModel", Napi::Function::New<ModuleHandle::create_model>(env, "createModel"));
  exports.Set("createLayer", Napi::Function::New<ModuleHandle::create_layer>(env, "createLayer"));
  exports.Set("runtimeInfo", Napi::Function::New<runtime_info>(env, "runtimeInfo"));
  exports.Set("setNumThreads", Napi::Function::New<set_num_threads>(env, "setNumThreads"));
  exports.Set("manualSeed", Napi::Function::New<manual_seed>(env, "manualSeed"));
  exports.Set("releaseMemory", Napi::Function::New<release_memory>(env, "releaseMemory"));
  exports.Set("hostCacheStats", Napi::Function::New<host_cache>(env, "hostCacheStats"));
  exports.Set("synchronize", Napi::Function::New<synchronize>(env, "synchronize"));
  exports.Set("peakMemory", Napi::Function::New<peak_memory>(env, "peakMemory"));
  exports.Set("matmulSeconds", Napi::Function::New<matmul_seconds>(env, "matmulSeconds"));
  exports.Set("fusedKernels", Napi::Function::New<fused_kernels_info>(env, "fusedKernels"));
  exports.Set("fusedKernelCheck", Napi::Function::New<fused_kernel_check>(env, "fusedKernelCheck"));
  exports.Set("opCountStart", Napi::Function::New<op_count_start>(env, "opCountStart"));
  exports.Set("opCountStop", Napi::Function::New<op_count_stop>(env, "opCountStop"));
  return exports;
}

}  // namespace roformer::js

static Napi::Object InitRoformerNative(Napi::Env env, Napi::Object exports) { return roformer::js::init(env, exports); }
NODE_API_MODULE(roformer_native, InitRoformerNative)
