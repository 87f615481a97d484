// Autograd glue of the fused kernels: shapes and dtypes checked, outputs allocated, the CUDA
// launchers (fused_kernels.h, current stream) or the CPU instantiation (fused_cpu.h, rows split
// by at::parallel_for) called, and what the backward needs saved (outputs, 1/rms, the seed).
#include "fused_ops.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "../compute_weight.h"
#include "../graph_capture.h"
#include "fused_cpu.h"

#ifdef ROFORMER_WITH_FUSED_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>

#include <mutex>

#include "fused_kernels.h"
#endif

namespace roformer::fused {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using kernels::Dropout;

namespace {

bool cpu_table_dtype(const torch::Tensor& t) { return t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble; }
// The CPU instantiation stores float, double, or bf16 with math in float (the residual stream
// and q/k under bf16 autocast); the embedding tables are float or double.
bool cpu_storage_dtype(torch::ScalarType t) { return t == torch::kFloat || t == torch::kDouble || t == torch::kBFloat16; }
// The dtype of the norms' math and of their saved 1/rms: double for double storage, else float.
torch::ScalarType acc_dtype(torch::ScalarType t) { return t == torch::kDouble ? torch::kDouble : torch::kFloat; }

// Calls fn(T{}, Acc{}) with the CPU instantiation's storage type T of `t` and its math type Acc.
template <class Fn>
void dispatch_cpu(torch::ScalarType t, const char* what, Fn fn) {
  switch (t) {
    case torch::kFloat: fn(float{}, float{}); break;
    case torch::kDouble: fn(double{}, double{}); break;
    case torch::kBFloat16: fn(c10::BFloat16{}, float{}); break;
    default: throw std::invalid_argument(std::string(what) + ": unsupported dtype " + c10::toString(t));
  }
}
bool cuda_dtype(torch::ScalarType t) { return t == torch::kFloat || t == torch::kHalf || t == torch::kBFloat16; }
bool cuda_dtype(const torch::Tensor& t) { return cuda_dtype(t.scalar_type()); }
bool on_cuda(const torch::Tensor& t) { return t.is_cuda() && cuda_kernels_built(); }

uint64_t draw_seed() {
  auto t = torch::empty({}, torch::TensorOptions().dtype(torch::kLong));
  t.random_();
  return static_cast<uint64_t>(t.item<int64_t>());
}

Dropout make_dropout(double p, uint64_t seed) {
  Dropout d;
  d.p = static_cast<float>(p);
  d.seed = seed;
  return d;
}

// The mask of one dropout: from the given seed (the tests'); on the CUDA device from libtorch's
// CUDA generator, whose Philox state is graph-safe (while a CUDA graph is captured it hands out
// device pointers that each replay's fresh seed and offset are written to, so a replayed step
// draws a new mask); on the CPU from a seed drawn on the host.
Dropout dropout_for(double p, std::optional<uint64_t> seed, const torch::Tensor& like) {
  if (p <= 0) return make_dropout(0, 0);
  if (seed) return make_dropout(p, *seed);
#ifdef ROFORMER_WITH_FUSED_CUDA
  if (like.is_cuda()) {
    at::Generator generator = at::cuda::detail::getDefaultCUDAGenerator(like.device().index());  // a handle
    std::lock_guard<std::mutex> lock(generator.mutex());
    // 4 numbers of the Philox stream: the offset only separates one mask's counters from the next's.
    const at::PhiloxCudaState state = at::check_generator<at::CUDAGeneratorImpl>(generator)->philox_cuda_state(4);
    Dropout d = make_dropout(p, 0);
    if (state.captured_) {
      d.seed_at = state.seed_.ptr;
      d.offset_at = state.offset_.ptr;
      d.offset = state.offset_intragraph_;
    } else {
      d.seed = state.seed_.val;
      d.offset = state.offset_.val;
    }
    return d;
  }
#endif
  return make_dropout(p, draw_seed());
}

// At least this many elements per CPU task.
int64_t grain(int64_t d) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d)); }

#ifdef ROFORMER_WITH_FUSED_CUDA
kernels::Storage storage(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return kernels::Storage::f32;
    case torch::kHalf: return kernels::Storage::f16;
    case torch::kBFloat16: return kernels::Storage::bf16;
    default: throw std::invalid_argument("fused kernels: unsupported dtype " + std::string(c10::toString(t.scalar_type())));
  }
}
cudaStream_t stream() { return at::cuda::getCurrentCUDAStream().stream(); }
void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}
#endif

[[noreturn]] void no_cuda_kernels() {
  throw std::runtime_error("fused kernels: this build has no CUDA kernels (CMake found no CUDA compiler)");
}

// Stores the dropout in the context, for the backward to regenerate its mask: 64-bit values and
// device addresses as int64.
void save_dropout(AutogradContext* ctx, const Dropout& d) {
  ctx->saved_data["p"] = static_cast<double>(d.p);
  ctx->saved_data["seed"] = static_cast<int64_t>(d.seed);
  ctx->saved_data["offset"] = static_cast<int64_t>(d.offset);
  ctx->saved_data["seed_at"] = reinterpret_cast<int64_t>(d.seed_at);
  ctx->saved_data["offset_at"] = reinterpret_cast<int64_t>(d.offset_at);
}
Dropout saved_dropout(AutogradContext* ctx) {
  Dropout d = make_dropout(ctx->saved_data["p"].toDouble(), static_cast<uint64_t>(ctx->saved_data["seed"].toInt()));
  d.offset = static_cast<uint64_t>(ctx->saved_data["offset"].toInt());
  d.seed_at = reinterpret_cast<const int64_t*>(ctx->saved_data["seed_at"].toInt());
  d.offset_at = reinterpret_cast<const int64_t*>(ctx->saved_data["offset_at"].toInt());
  return d;
}

class ResidualRMSNorm : public torch::autograd::Function<ResidualRMSNorm> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& f_in, double alpha,
                               double eps, const Dropout& dropout) {
    // As a named op: profilers, NVTX ranges and the op count (op_count.h) see it.
    RECORD_FUNCTION("roformer::residual_rms_norm", std::vector<c10::IValue>({x_in, f_in}));
    auto x = x_in.contiguous(), f = f_in.contiguous();
    const int64_t d = x.size(-1), rows = x.numel() / d;
    auto y = torch::empty_like(x);
    torch::Tensor inv_rms;
    if (x.is_cuda()) {
#ifdef ROFORMER_WITH_FUSED_CUDA
      inv_rms = torch::empty({rows}, x.options().dtype(torch::kFloat));
      check(kernels::residual_rms_norm_forward_cuda(storage(x), storage(f), x.data_ptr(), f.data_ptr(), y.data_ptr(),
                                                    inv_rms.data_ptr<float>(), rows, d, static_cast<float>(alpha),
                                                    static_cast<float>(eps), dropout, stream()),
            "residual RMS norm (forward)");
#else
      no_cuda_kernels();
#endif
    } else {
      inv_rms = torch::empty({rows}, x.options().dtype(acc_dtype(x.scalar_type())));
      dispatch_cpu(x.scalar_type(), "residual_rms_norm", [&](auto t, auto acc) {
        using T = decltype(t);
        using Acc = decltype(acc);
        const auto* xp = x.data_ptr<T>();
        const auto* fp = f.data_ptr<T>();
        auto* yp = y.data_ptr<T>();
        auto* rp = inv_rms.data_ptr<Acc>();
        at::parallel_for(0, rows, grain(d), [&](int64_t begin, int64_t end) {
          kernels::residual_rms_norm_forward_cpu<T, Acc>(xp, fp, yp, rp, begin, end, d, static_cast<Acc>(alpha),
                                                         static_cast<Acc>(eps), dropout);
        });
      });
    }
    ctx->save_for_backward({y, inv_rms});
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["f_dtype"] = static_cast<int64_t>(f.scalar_type());
    save_dropout(ctx, dropout);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("roformer::residual_rms_norm_backward",
                    std::vector<c10::IValue>(grad_outputs.begin(), grad_outputs.end()));
    auto saved = ctx->get_saved_variables();
    const auto& y = saved[0];
    const auto& inv_rms = saved[1];
    auto dy = grad_outputs[0].to(y.scalar_type()).contiguous();
    const int64_t d = y.size(-1), rows = y.numel() / d;
    const double alpha = ctx->saved_data["alpha"].toDouble();
    const auto f_dtype = static_cast<torch::ScalarType>(ctx->saved_data["f_dtype"].toInt());
    const auto dropout = saved_dropout(ctx);
    auto dx = torch::empty_like(y);
    auto df = torch::empty_like(y, y.options().dtype(f_dtype));
    if (y.is_cuda()) {
#ifdef ROFORMER_WITH_FUSED_CUDA
      check(kernels::residual_rms_norm_backward_cuda(storage(y), storage(df), dy.data_ptr(), y.data_ptr(),
                                                     inv_rms.data_ptr<float>(), dx.data_ptr(), df.data_ptr(), rows, d,
                                                     static_cast<float>(alpha), dropout, stream()),
            "residual RMS norm (backward)");
#else
      no_cuda_kernels();
#endif
    } else {
      dispatch_cpu(y.scalar_type(), "residual_rms_norm", [&](auto t, auto acc) {
        using T = decltype(t);
        using Acc = decltype(acc);
        const auto* dyp = dy.data_ptr<T>();
        const auto* yp = y.data_ptr<T>();
        const auto* rp = inv_rms.data_ptr<Acc>();
        auto* dxp = dx.data_ptr<T>();
        auto* dfp = df.data_ptr<T>();
        at::parallel_for(0, rows, grain(d), [&](int64_t begin, int64_t end) {
          kernels::residual_rms_norm_backward_cpu<T, Acc>(dyp, yp, rp, dxp, dfp, begin, end, d, static_cast<Acc>(alpha),
                                                          dropout);
        });
      });
    }
    return {dx, df, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// Rotates q and k (batch, seq, heads, head_dim) into contiguous outputs; sign −1: the transpose.
std::pair<torch::Tensor, torch::Tensor> rotate(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& cos,
                                               const torch::Tensor& sin, double sign) {
  const int64_t batch = q.size(0), seq = q.size(1), heads = q.size(2), head_dim = q.size(3);
  const int64_t table_rows = cos.numel() / head_dim;  // seq, or batch·seq (rotary_qk_applies)
  // q and k are read in place through their strides, whatever they are: slices of a packed QKV
  // projection (forward), the gradients attention returns (backward: laid out (batch, heads, seq,
  // head_dim), or with head_dim strided, as a product with kᵀ leaves k's).
  auto strides = [](const torch::Tensor& t) {
    return kernels::RotaryInput<int64_t>{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
  };
  auto q_out = torch::empty(q.sizes(), q.options().memory_format(torch::MemoryFormat::Contiguous));
  auto k_out = torch::empty(k.sizes(), k.options().memory_format(torch::MemoryFormat::Contiguous));
  if (q.is_cuda()) {
#ifdef ROFORMER_WITH_FUSED_CUDA
    auto c = cos.to(torch::kFloat).contiguous(), s = sin.to(torch::kFloat).contiguous();
    check(kernels::rotary_qk_cuda(storage(q), q.data_ptr(), k.data_ptr(), q_out.data_ptr(), k_out.data_ptr(),
                                  c.data_ptr<float>(), s.data_ptr<float>(), batch, seq, table_rows, heads, head_dim,
                                  strides(q), strides(k), static_cast<float>(sign), stream()),
          "rotary q/k");
#else
    no_cuda_kernels();
#endif
  } else {
    dispatch_cpu(q.scalar_type(), "rotary_qk", [&](auto t, auto acc) {
      using T = decltype(t);
      using Acc = decltype(acc);
      auto c = cos.to(acc_dtype(q.scalar_type())).contiguous(), s = sin.to(acc_dtype(q.scalar_type())).contiguous();
      const int64_t pairs = batch * seq * heads * head_dim / 2;
      for (auto [in, out] : {std::pair{&q, &q_out}, std::pair{&k, &k_out}}) {
        const auto* ip = in->template data_ptr<T>();
        auto* op = out->template data_ptr<T>();
        const auto stride = strides(*in);
        at::parallel_for(0, pairs, 16384, [&](int64_t begin, int64_t end) {
          kernels::rotary_cpu<T, Acc>(ip, op, c.data_ptr<Acc>(), s.data_ptr<Acc>(), begin, end, table_rows, batch, seq,
                                      heads, head_dim, stride, static_cast<Acc>(sign));
        });
      }
    });
  }
  return {q_out, k_out};
}

class RotaryQK : public torch::autograd::Function<RotaryQK> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& cos, const torch::Tensor& sin) {
    RECORD_FUNCTION("roformer::rotary_qk", std::vector<c10::IValue>({q, k}));
    ctx->save_for_backward({cos, sin});
    auto [qr, kr] = rotate(q, k, cos, sin, 1.0);
    return {qr, kr};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("roformer::rotary_qk_backward",
                    std::vector<c10::IValue>(grad_outputs.begin(), grad_outputs.end()));
    auto saved = ctx->get_saved_variables();
    auto dq = grad_outputs[0], dk = grad_outputs[1];
    if (!dq.defined()) dq = torch::zeros_like(dk);
    if (!dk.defined()) dk = torch::zeros_like(dq);
    auto [gq, gk] = rotate(dq, dk, saved[0], saved[1], -1.0);
    return {gq, gk, torch::Tensor(), torch::Tensor()};
  }
};

class EmbeddingRMSNorm : public torch::autograd::Function<EmbeddingRMSNorm> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& ids_in, const torch::Tensor& type_ids_in,
                               const torch::Tensor& tok_in, const torch::Tensor& seg_in, double eps,
                               const Dropout& dropout, torch::ScalarType out_dtype) {
    RECORD_FUNCTION("roformer::embedding_rms_norm", std::vector<c10::IValue>({tok_in, seg_in}));
    auto ids = ids_in.to(torch::kLong).contiguous(), type_ids = type_ids_in.to(torch::kLong).contiguous();
    auto tok = tok_in.contiguous(), seg = seg_in.contiguous();
    const int64_t d = tok.size(1), rows = ids.numel();
    auto shape = ids.sizes().vec();
    shape.push_back(d);
    auto y = torch::empty(shape, tok.options().dtype(out_dtype));
    torch::Tensor inv_rms;
    if (tok.is_cuda()) {
#ifdef ROFORMER_WITH_FUSED_CUDA
      inv_rms = torch::empty({rows}, tok.options().dtype(torch::kFloat));
      check(kernels::embedding_rms_norm_forward_cuda(storage(y), ids.data_ptr<int64_t>(), type_ids.data_ptr<int64_t>(),
                                                     tok.data_ptr<float>(), seg.data_ptr<float>(), y.data_ptr(),
                                                     inv_rms.data_ptr<float>(), rows, d, static_cast<float>(eps),
                                                     dropout, stream()),
            "embedding RMS norm (forward)");
#else
      no_cuda_kernels();
#endif
    } else {
      // The tables are the math's type (embedding_rms_norm_applies): float for a bf16 output.
      inv_rms = torch::empty({rows}, tok.options());
      dispatch_cpu(out_dtype, "embedding_rms_norm", [&](auto t, auto acc) {
        using T = decltype(t);
        using Acc = decltype(acc);
        at::parallel_for(0, rows, grain(d), [&](int64_t begin, int64_t end) {
          kernels::embedding_rms_norm_forward_cpu<Acc, T, Acc>(
              ids.data_ptr<int64_t>(), type_ids.data_ptr<int64_t>(), tok.data_ptr<Acc>(), seg.data_ptr<Acc>(),
              y.data_ptr<T>(), inv_rms.data_ptr<Acc>(), begin, end, d, static_cast<Acc>(eps), dropout);
        });
      });
    }
    // Under DirectGradients the backward adds into the tables' .grad (compute_weight.h): it needs them.
    const bool direct = compute::direct_gradients_active();
    ctx->saved_data["direct"] = direct;
    if (direct) {
      ctx->save_for_backward({ids, type_ids, y, inv_rms, tok_in, seg_in});
    } else {
      ctx->save_for_backward({ids, type_ids, y, inv_rms});
    }
    ctx->saved_data["table_dtype"] = static_cast<int64_t>(tok.scalar_type());
    ctx->saved_data["tok_rows"] = tok.size(0);
    ctx->saved_data["seg_rows"] = seg.size(0);
    save_dropout(ctx, dropout);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("roformer::embedding_rms_norm_backward",
                    std::vector<c10::IValue>(grad_outputs.begin(), grad_outputs.end()));
    auto saved = ctx->get_saved_variables();
    const auto &ids = saved[0], &type_ids = saved[1], &y = saved[2], &inv_rms = saved[3];
    auto dy = grad_outputs[0].to(y.scalar_type()).contiguous();
    const int64_t d = y.size(-1), rows = ids.numel();
    const auto dropout = saved_dropout(ctx);
    // The tables' gradients in the tables' dtype (the output may be narrower: bf16 under autocast).
    const auto tables = y.options().dtype(static_cast<torch::ScalarType>(ctx->saved_data["table_dtype"].toInt()));
    // Each table's gradient is added into its .grad where DirectGradients allows (only the rows
    // looked up are touched), else into a zeroed table-sized buffer that autograd passes on.
    const bool direct = ctx->saved_data["direct"].toBool();
    auto into_grad = [&](size_t saved_at) {  // the table's .grad, or undefined where it may not be used
      const auto& table = saved[saved_at];
      return direct && compute::grad_ready(table, y.device()) && table.grad().is_contiguous() ? table.grad()
                                                                                              : torch::Tensor();
    };
    torch::NoGradGuard no_grad;
    const auto tok_into = into_grad(4), seg_into = into_grad(5);
    auto tok_grad = tok_into.defined() ? tok_into : torch::zeros({ctx->saved_data["tok_rows"].toInt(), d}, tables);
    auto seg_grad = seg_into.defined() ? seg_into : torch::zeros({ctx->saved_data["seg_rows"].toInt(), d}, tables);
    if (y.is_cuda()) {
#ifdef ROFORMER_WITH_FUSED_CUDA
      check(kernels::embedding_rms_norm_backward_cuda(storage(y), ids.data_ptr<int64_t>(), type_ids.data_ptr<int64_t>(),
                                                      dy.data_ptr(), y.data_ptr(), inv_rms.data_ptr<float>(),
                                                      tok_grad.data_ptr<float>(), seg_grad.data_ptr<float>(), rows, d,
                                                      dropout, stream()),
            "embedding RMS norm (backward)");
#else
      no_cuda_kernels();
#endif
    } else {
      auto grad = torch::empty({rows, d}, tables);
      dispatch_cpu(y.scalar_type(), "embedding_rms_norm", [&](auto t, auto acc) {
        using T = decltype(t);
        using Acc = decltype(acc);
        at::parallel_for(0, rows, grain(d), [&](int64_t begin, int64_t end) {
          kernels::embedding_rms_norm_backward_cpu<T, Acc>(dy.data_ptr<T>(), y.data_ptr<T>(), inv_rms.data_ptr<Acc>(),
                                                           grad.data_ptr<Acc>(), begin, end, d, dropout);
        });
      });
      tok_grad.index_add_(0, ids.view(-1), grad);
      seg_grad.index_add_(0, type_ids.view(-1), grad);
    }
    return {torch::Tensor(), torch::Tensor(), tok_into.defined() ? torch::Tensor() : tok_grad,
            seg_into.defined() ? torch::Tensor() : seg_grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// keep·x/(1−p) on the CPU, a parallel_for over groups of 4 elements.
torch::Tensor dropout_on_cpu(const torch::Tensor& x_in, const Dropout& dropout) {
  auto x = x_in.contiguous();
  auto y = torch::empty_like(x);
  dispatch_cpu(x.scalar_type(), "dropout", [&](auto t, auto acc) {
    using T = decltype(t);
    using Acc = decltype(acc);
    const auto* xp = x.data_ptr<T>();
    auto* yp = y.data_ptr<T>();
    at::parallel_for(0, x.numel() / 4, 4096, [&](int64_t begin, int64_t end) {
      kernels::dropout_cpu<T, Acc>(xp, yp, begin, end, dropout);
    });
  });
  return y;
}

class FusedDropout : public torch::autograd::Function<FusedDropout> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const Dropout& dropout) {
    RECORD_FUNCTION("roformer::dropout", std::vector<c10::IValue>({x}));
    save_dropout(ctx, dropout);
    return dropout_on_cpu(x, dropout);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("roformer::dropout_backward", std::vector<c10::IValue>(grad_outputs.begin(), grad_outputs.end()));
    return {dropout_on_cpu(grad_outputs[0], saved_dropout(ctx)), torch::Tensor()};
  }
};

// softmax over the last dimension, then dropout, on the CPU: one pass over the scores each way
// (fused_cpu.cpp), where the chain makes two (softmax, dropout) forward and two backward. Saves the
// probabilities for the backward and the output, which the next product keeps for its own anyway.
class FusedSoftmaxDropout : public torch::autograd::Function<FusedSoftmaxDropout> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& scores, const Dropout& dropout) {
    RECORD_FUNCTION("roformer::softmax_dropout", std::vector<c10::IValue>({scores}));
    auto s = scores.contiguous();
    auto probs = torch::empty_like(s), dropped = torch::empty_like(s);
    const int64_t n = s.size(-1), rows = s.numel() / n;
    dispatch_cpu(s.scalar_type(), "softmax_dropout", [&](auto t, auto acc) {
      using T = decltype(t);
      using Acc = decltype(acc);
      const auto* sp = s.data_ptr<T>();
      auto *pp = probs.data_ptr<T>(), *dp = dropped.data_ptr<T>();
      at::parallel_for(0, rows, grain(n), [&](int64_t begin, int64_t end) {
        kernels::softmax_dropout_forward_cpu<T, Acc>(sp, pp, dp, begin, end, n, dropout);
      });
    });
    ctx->save_for_backward({probs, dropped});
    return dropped;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("roformer::softmax_dropout_backward", std::vector<c10::IValue>(grad_outputs.begin(), grad_outputs.end()));
    const auto saved = ctx->get_saved_variables();
    const auto &probs = saved[0], &dropped = saved[1];
    auto dd = grad_outputs[0].contiguous();
    auto ds = torch::empty_like(dd);
    const int64_t n = dd.size(-1), rows = dd.numel() / n;
    dispatch_cpu(dd.scalar_type(), "softmax_dropout", [&](auto t, auto acc) {
      using T = decltype(t);
      using Acc = decltype(acc);
      const auto *gp = dd.data_ptr<T>(), *dp = dropped.data_ptr<T>(), *pp = probs.data_ptr<T>();
      auto* sp = ds.data_ptr<T>();
      at::parallel_for(0, rows, grain(n), [&](int64_t begin, int64_t end) {
        kernels::softmax_dropout_backward_cpu<T, Acc>(gp, dp, pp, sp, begin, end, n);
      });
    });
    return {ds, torch::Tensor()};
  }
};

// The feed-forward's ReLU in place on the CPU (float, double, bf16; contiguous), the backward from
// the output: libtorch 1.13's bf16 relu and its threshold_backward convert element by element.
class FusedRelu : public torch::autograd::Function<FusedRelu> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x) {
    RECORD_FUNCTION("roformer::relu_", std::vector<c10::IValue>({x}));
    dispatch_cpu(x.scalar_type(), "relu", [&](auto t, auto) {
      using T = decltype(t);
      auto* xp = x.data_ptr<T>();
      at::parallel_for(0, x.numel(), 32768, [&](int64_t begin, int64_t end) { kernels::relu_forward_cpu<T>(xp, begin, end); });
    });
    ctx->mark_dirty({x});
    ctx->save_for_backward({x});  // the output: the backward needs only where it is positive
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("roformer::relu_backward", std::vector<c10::IValue>(grad_outputs.begin(), grad_outputs.end()));
    const auto y = ctx->get_saved_variables()[0];
    auto dy = grad_outputs[0].contiguous();
    auto dx = torch::empty_like(dy);
    dispatch_cpu(dy.scalar_type(), "relu", [&](auto t, auto) {
      using T = decltype(t);
      const auto *dyp = dy.data_ptr<T>(), *yp = y.data_ptr<T>();
      auto* dxp = dx.data_ptr<T>();
      at::parallel_for(0, dy.numel(), 32768, [&](int64_t begin, int64_t end) {
        kernels::relu_backward_cpu<T>(dyp, yp, dxp, begin, end);
      });
    });
    return {dx};
  }
};

}  // namespace

bool cuda_kernels_built() {
#ifdef ROFORMER_WITH_FUSED_CUDA
  return true;
#else
  return false;
#endif
}

// The CUDA kernels keep a row of floats in shared memory: at most 48 KiB without opting in.
constexpr int64_t kMaxRow = 12288;

bool residual_rms_norm_applies(const torch::Tensor& x, const torch::Tensor& f) {
  if (x.sizes() != f.sizes() || x.dim() == 0 || x.size(-1) % 4 != 0 || x.size(-1) > kMaxRow ||
      x.device() != f.device())
    return false;
  if (on_cuda(x)) return cuda_dtype(x) && cuda_dtype(f);
  return x.is_cpu() && cpu_storage_dtype(x.scalar_type()) && f.scalar_type() == x.scalar_type();
}

torch::Tensor residual_rms_norm(const torch::Tensor& x, const torch::Tensor& f, double alpha, double p, double eps,
                                std::optional<uint64_t> seed) {
  if (!residual_rms_norm_applies(x, f)) throw std::invalid_argument("residual_rms_norm: the fused kernel does not take these tensors");
  return ResidualRMSNorm::apply(x, f, alpha, eps, dropout_for(p, seed, x));
}

bool rotary_qk_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& cos) {
  if (q.dim() != 4 || q.sizes() != k.sizes() || q.scalar_type() != k.scalar_type() || q.device() != k.device() ||
      q.size(3) % 2 != 0 || cos.device() != q.device() || cos.size(-1) != q.size(3))
    return false;
  // Tables of (seq, head_dim) or (batch, seq, head_dim), however broadcast dimensions are written.
  const int64_t rows = cos.numel() / q.size(3);
  if (rows != q.size(1) && rows != q.size(0) * q.size(1)) return false;
  if (on_cuda(q)) return cuda_dtype(q);
  return q.is_cpu() && cpu_storage_dtype(q.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> rotary_qk(const torch::Tensor& q, const torch::Tensor& k,
                                                  const torch::Tensor& cos, const torch::Tensor& sin) {
  if (!rotary_qk_applies(q, k, cos)) throw std::invalid_argument("rotary_qk: the fused kernel does not take these tensors");
  auto out = RotaryQK::apply(q, k, cos, sin);
  return {out[0], out[1]};
}

bool embedding_rms_norm_applies(const torch::Tensor& tok, const torch::Tensor& seg, std::optional<torch::ScalarType> out) {
  if (tok.dim() != 2 || seg.dim() != 2 || tok.size(1) != seg.size(1) || tok.size(1) % 4 != 0 || tok.size(1) > kMaxRow ||
      tok.scalar_type() != seg.scalar_type() || tok.device() != seg.device())
    return false;
  const auto out_dtype = out.value_or(tok.scalar_type());
  if (on_cuda(tok)) return tok.scalar_type() == torch::kFloat && cuda_dtype(out_dtype);
  if (!tok.is_cpu() || !cpu_table_dtype(tok)) return false;
  return out_dtype == tok.scalar_type() || (out_dtype == torch::kBFloat16 && tok.scalar_type() == torch::kFloat);
}

torch::Tensor embedding_rms_norm(const torch::Tensor& ids, const torch::Tensor& type_ids, const torch::Tensor& tok,
                                 const torch::Tensor& seg, double p, double eps, std::optional<uint64_t> seed,
                                 std::optional<torch::ScalarType> out) {
  if (!embedding_rms_norm_applies(tok, seg, out)) throw std::invalid_argument("embedding_rms_norm: the fused kernel does not take these tables");
  return EmbeddingRMSNorm::apply(ids, type_ids, tok, seg, eps, dropout_for(p, seed, tok), out.value_or(tok.scalar_type()));
}

bool dropout_applies(const torch::Tensor& x) {
  return x.is_cpu() && cpu_storage_dtype(x.scalar_type()) && x.numel() > 0 && x.numel() % 4 == 0;
}
bool softmax_dropout_applies(const torch::Tensor& scores) {
  return dropout_applies(scores) && scores.dim() >= 1 && scores.size(-1) > 0;
}

// The CPU takes all four. fusedKernelCheck, fp32, forward + backward, small-model rows of 384,
// 8 × 128 and 8 × 512, two threads, idle 2-core machine (2026-12-01): fused speed over the chain's
// residual norm 1.6-1.9× (p = 0) and 2.6-2.7× (p = 0.1; its float rows vectorised, fused_cpu.cpp),
// RoPE 2.2-2.6×, embedding norm 1.1× and 2.0×; the dropout kernel 1.9-2.0× libtorch's dropout on
// attention weights (8 × 6 heads × 128² and 512²). They had lost to the chains (0.3-0.9×) while
// at::parallel_for ran them on one thread (the addon was compiled without OpenMP: CMakeLists.txt),
// RoPE divided seven times per pair and the dropout drew Philox one group at a time (fused_cpu.cpp
// now does rows and batches).
// The ReLU (2026-12-02, same machine, a small-model 8 × 128 step's self times, one thread): bf16
// libtorch's clamp_min_ 8.3 + threshold_backward 4.0 ms, the kernels 1.9 + 2.4 ms; fp32 3.0 + 7.0
// against 2.0 + 6.6 ms.
const CpuChoice used_on_cpu{/*residual_rms_norm=*/true, /*rotary=*/true, /*embedding_rms_norm=*/true, /*dropout=*/true,
                            /*softmax_dropout=*/true, /*relu=*/true};

namespace {
// ROFORMER_FUSED: "0" never, "1" wherever a kernel applies, unset: on CUDA, and on the CPU per used_on_cpu.
int fused_setting() {
  static const int setting = [] {
    const char* env = std::getenv("ROFORMER_FUSED");
    return env && std::string(env) == "0" ? 0 : env && std::string(env) == "1" ? 1 : -1;
  }();
  return setting;
}
bool wanted(const torch::Tensor& t, bool on_cpu) {
  const int setting = fused_setting();
  return setting == 1 || (setting == -1 && (t.is_cuda() || on_cpu));
}
// The two norms with dropout draw its seed on the host on the CPU: not while a graph step is
// emulated there (graph_capture.h). On CUDA the seed comes from the graph-safe CUDA generator.
bool seed_allowed(const torch::Tensor& t) { return t.is_cuda() || graph_capture::host_seeded_dropout_allowed(); }
}  // namespace

bool use_residual_rms_norm(const torch::Tensor& x, const torch::Tensor& f) {
  return wanted(x, used_on_cpu.residual_rms_norm) && seed_allowed(x) && residual_rms_norm_applies(x, f);
}
bool use_dropout(const torch::Tensor& x) {
  return wanted(x, used_on_cpu.dropout) && seed_allowed(x) && dropout_applies(x);
}
bool use_softmax_dropout(const torch::Tensor& scores) {
  return wanted(scores, used_on_cpu.softmax_dropout) && seed_allowed(scores) && softmax_dropout_applies(scores);
}

torch::Tensor dropout(const torch::Tensor& x, double p, std::optional<uint64_t> seed) {
  if (p <= 0) return x;
  if (seed || use_dropout(x)) {
    if (!dropout_applies(x)) throw std::invalid_argument("dropout: the fused kernel does not take this tensor");
    return FusedDropout::apply(x, dropout_for(p, seed, x));
  }
  return torch::dropout(x, p, /*train=*/true);
}

torch::Tensor softmax_dropout(const torch::Tensor& scores, double p, std::optional<uint64_t> seed) {
  if (!softmax_dropout_applies(scores)) throw std::invalid_argument("softmax_dropout: the fused kernel does not take this tensor");
  return FusedSoftmaxDropout::apply(scores, dropout_for(p, seed, scores));
}

bool relu_applies(const torch::Tensor& x) {
  return x.is_cpu() && cpu_storage_dtype(x.scalar_type()) && x.is_contiguous() && x.numel() > 0;
}

torch::Tensor relu_(torch::Tensor x) {
  if (wanted(x, used_on_cpu.relu) && relu_applies(x)) return FusedRelu::apply(x);
  return x.relu_();
}

bool use_rotary_qk(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& cos) {
  return wanted(q, used_on_cpu.rotary) && rotary_qk_applies(q, k, cos);
}
bool use_embedding_rms_norm(const torch::Tensor& tok, const torch::Tensor& seg, std::optional<torch::ScalarType> out) {
  return wanted(tok, used_on_cpu.embedding_rms_norm) && seed_allowed(tok) && embedding_rms_norm_applies(tok, seg, out);
}

torch::Tensor dropout_keep_mask(int64_t rows, int64_t d, double p, uint64_t seed) {
  auto keep = torch::empty({rows, d}, torch::kByte);
  kernels::dropout_keep_mask(keep.data_ptr<uint8_t>(), rows, d, make_dropout(p, seed));
  return keep;
}

}  // namespace roformer::fused
