// fusedKernels() and fusedKernelCheck(): the fused kernels against the unfused expression, for
// the vitest suite (the CPU instantiation in float64 against libtorch's autograd) and the GPU
// check (bench/gpu/fused-check.mjs: the CUDA kernels in fp32/bf16/fp16). Reference values are
// computed in float64 on the same device with the same dropout mask (drawn by the CPU
// instantiation: on CUDA that also checks that both draw the same mask); errors are
// ‖out − ref‖ / ‖ref‖, the worst over the outputs or over the gradients. Also times the fused
// path against the chain the model runs without it (forward + backward, median of `iters`).
#include "fused_check.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <vector>

#include "../batched_matmul.h"
#include "../modules.h"
#include "../napi_util.h"
#include "fused_ops.h"
#include "keep_flags_cpu.h"

namespace roformer::js {

namespace {

using torch::Tensor;

double relative_error(const Tensor& out, const Tensor& ref) {
  const double scale = ref.norm().item<double>();
  return (out.to(torch::kDouble) - ref).norm().item<double>() / std::max(scale, 1e-30);
}

double limit_for(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kDouble: return 1e-12;
    case torch::kFloat: return 1e-5;
    case torch::kHalf: return 5e-3;
    default: return 2e-2;  // bf16: 8 bits of mantissa
  }
}

// Median milliseconds of fn() (forward + backward) over iters runs, after two warm-ups.
double median_ms(const std::function<void()>& fn, torch::Device device, int iters) {
  auto sync = [&] { if (device.is_cuda()) torch::cuda::synchronize(); };
  std::vector<double> ms;
  for (int i = 0; i < iters + 2; ++i) {
    sync();
    const auto started = std::chrono::steady_clock::now();
    fn();
    sync();
    if (i >= 2) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  }
  if (ms.empty()) return 0;
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

struct Outcome {
  double value_error = 0, gradient_error = 0, kept = 1, fused_ms = 0, unfused_ms = 0;
};

// Gradients of Σ out·dy with respect to `inputs` (leaves), by autograd.
std::vector<Tensor> gradients(const Tensor& out, const Tensor& dy, const std::vector<Tensor>& inputs) {
  for (const auto& t : inputs) t.mutable_grad() = Tensor();
  out.backward(dy.to(out.scalar_type()));
  std::vector<Tensor> grads;
  for (const auto& t : inputs) grads.push_back(t.grad());
  return grads;
}

// The kernels carry p as a float (fused_rows.h's Dropout): the reference scales by the same 1/(1 − p).
double kept_scale_p(double p) { return static_cast<float>(p); }

Tensor leaf(const Tensor& t) { return t.detach().clone().set_requires_grad(true); }

// The reference RMSNorm(h) in float64 (h built from `leaves` by autograd) against the fused
// output y and its gradients g (of the same leaves' fused counterparts, in order).
Outcome compare_normalised(const Tensor& y, const std::vector<Tensor>& g, const Tensor& h, double eps, const Tensor& dy,
                           const std::vector<Tensor>& leaves, const Tensor& keep) {
  auto ref = h * torch::rsqrt(h.square().mean(-1, true) + eps);
  auto gr = gradients(ref, dy, leaves);
  Outcome o;
  o.value_error = relative_error(y, ref);
  for (size_t i = 0; i < g.size(); ++i) o.gradient_error = std::max(o.gradient_error, relative_error(g[i], gr[i]));
  o.kept = keep.mean().item<double>();
  return o;
}

Outcome check_residual(torch::Device device, torch::ScalarType dtype, torch::ScalarType x_dtype, double p, uint64_t seed,
                       int64_t rows, int64_t d, int iters) {
  const double alpha = 0.7, eps = 1e-6;
  auto options = torch::TensorOptions().device(device);
  auto x = leaf(torch::randn({rows, d}, options.dtype(x_dtype)));
  auto f = leaf(torch::randn({rows, d}, options.dtype(dtype)));
  auto dy = torch::randn({rows, d}, options.dtype(torch::kDouble));
  auto y = fused::residual_rms_norm(x, f, alpha, p, eps, seed);
  auto g = gradients(y, dy, {x, f});
  auto keep = fused::dropout_keep_mask(rows, d, p, seed).to(device, torch::kDouble);
  auto xr = leaf(x.to(torch::kDouble)), fr = leaf(f.to(torch::kDouble));
  auto o = compare_normalised(y, g, xr + alpha * fr * keep / (1 - kept_scale_p(p)), eps, dy, {xr, fr}, keep);
  if (iters > 0) {
    RMSNorm norm(eps);
    auto dyc = dy.to(x_dtype);
    o.fused_ms = median_ms([&] { fused::residual_rms_norm(x, f, alpha, p, eps).backward(dyc); }, device, iters);
    o.unfused_ms = median_ms([&] { norm(x + alpha * torch::dropout(f, p, true)).backward(dyc); }, device, iters);
  }
  return o;
}

// q and k as slices of one packed projection (batch, seq, 3, heads, head_dim), as the forward
// reads them; or heads_first: views of (3, batch, heads, seq, head_dim), with the output's
// gradients as attention may hand them to the backward — q's laid out (batch, heads, seq,
// head_dim), k's (batch, heads, head_dim, seq), head_dim strided (a product with kᵀ).
Outcome check_rotary(torch::Device device, torch::ScalarType dtype, int64_t batch, int64_t seq, int64_t heads,
                     int64_t head_dim, bool heads_first, int iters) {
  RotaryEmbedding rotary(head_dim);
  auto [cos, sin] = rotary->forward(seq, device, dtype);
  auto options = torch::TensorOptions().device(device).dtype(dtype);
  auto packed = leaf(heads_first ? torch::randn({3, batch, heads, seq, head_dim}, options)
                                 : torch::randn({batch, seq, 3, heads, head_dim}, options));
  auto q_of = [&](const Tensor& p) { return heads_first ? p.select(0, 0).transpose(1, 2) : p.select(2, 0); };
  auto k_of = [&](const Tensor& p) { return heads_first ? p.select(0, 1).transpose(1, 2) : p.select(2, 1); };
  const auto doubles = options.dtype(torch::kDouble);
  auto dq = torch::randn({batch, heads, seq, head_dim}, doubles).transpose(1, 2);
  auto dk = torch::randn({batch, heads, head_dim, seq}, doubles).transpose(2, 3).transpose(1, 2);
  if (!heads_first) dq = dq.contiguous(), dk = dk.contiguous();
  auto [qr, kr] = fused::rotary_qk(q_of(packed), k_of(packed), cos, sin);
  torch::autograd::backward({qr, kr}, {dq.to(dtype), dk.to(dtype)});
  // Reference: the interleaved rotation written out, in float64.
  auto c = cos.to(torch::kDouble).unsqueeze(-2), s = sin.to(torch::kDouble).unsqueeze(-2);
  auto rotate = [&](const Tensor& t) {
    auto pairs = t.unflatten(-1, {-1, 2});
    auto swapped = torch::stack({-pairs.select(-1, 1), pairs.select(-1, 0)}, -1).flatten(-2);
    return t * c + swapped * s;
  };
  auto packed64 = leaf(packed.to(torch::kDouble));
  auto qref = rotate(q_of(packed64)), kref = rotate(k_of(packed64));
  torch::autograd::backward({qref, kref}, {dq, dk});
  Outcome o;
  o.value_error = std::max(relative_error(qr, qref), relative_error(kr, kref));
  o.gradient_error = relative_error(packed.grad(), packed64.grad());
  if (iters > 0) {
    auto q = q_of(packed).detach().requires_grad_(), k = k_of(packed).detach().requires_grad_();
    auto dqc = dq.to(dtype), dkc = dk.to(dtype);
    o.fused_ms = median_ms([&] {
      auto [a, b] = fused::rotary_qk(q, k, cos, sin);
      torch::autograd::backward({a, b}, {dqc, dkc});
    }, device, iters);
    o.unfused_ms = median_ms([&] {
      // The model's path: q and k copied out of the packed projection, then rotated one at a time.
      torch::autograd::backward({apply_rotary(q.contiguous(), c.to(dtype), s.to(dtype)),
                                 apply_rotary(k.contiguous(), c.to(dtype), s.to(dtype))}, {dqc, dkc});
    }, device, iters);
  }
  return o;
}

// The tables in `dtype`, the output in `out_dtype` (the residual stream's: bf16 under autocast).
Outcome check_embedding(torch::Device device, torch::ScalarType dtype, torch::ScalarType out_dtype, double p,
                        uint64_t seed, int64_t batch, int64_t seq, int64_t d, int iters) {
  const double eps = 1e-6;
  const int64_t vocab = 97, types = 2;
  auto options = torch::TensorOptions().device(device);
  auto tok = leaf(torch::randn({vocab, d}, options.dtype(dtype)));
  auto seg = leaf(torch::randn({types, d}, options.dtype(dtype)));
  auto ids = torch::randint(vocab, {batch, seq}, options.dtype(torch::kLong));
  auto type_ids = torch::randint(types, {batch, seq}, options.dtype(torch::kLong));
  auto dy = torch::randn({batch, seq, d}, options.dtype(torch::kDouble));
  auto y = fused::embedding_rms_norm(ids, type_ids, tok, seg, p, eps, seed, out_dtype);
  auto g = gradients(y, dy, {tok, seg});
  auto keep = fused::dropout_keep_mask(batch * seq, d, p, seed).to(device, torch::kDouble).view({batch, seq, d});
  auto tr = leaf(tok.to(torch::kDouble)), sr = leaf(seg.to(torch::kDouble));
  auto h = (torch::embedding(tr, ids) + torch::embedding(sr, type_ids)) * keep / (1 - kept_scale_p(p));
  auto o = compare_normalised(y, g, h, eps, dy, {tr, sr}, keep);
  if (iters > 0) {
    RMSNorm norm(eps);
    auto dyc = dy.to(dtype);
    o.fused_ms = median_ms([&] {
      fused::embedding_rms_norm(ids, type_ids, tok, seg, p, eps, std::nullopt, out_dtype).backward(dyc.to(out_dtype));
    }, device, iters);
    o.unfused_ms = median_ms([&] {
      norm(torch::dropout(torch::embedding(tok, ids) + torch::embedding(seg, type_ids), p, true)).backward(dyc);
    }, device, iters);
  }
  return o;
}
// The dropout kernel on a (rows, d) tensor against x·keep/(1−p) in float64 with the mask
// dropout_keep_mask draws (any (rows, d) of the same size has the same flat mask).
Outcome check_dropout(torch::Device device, torch::ScalarType dtype, double p, uint64_t seed, int64_t rows, int64_t d,
                      int iters) {
  auto options = torch::TensorOptions().device(device);
  auto x = leaf(torch::randn({rows, d}, options.dtype(dtype)));
  auto dy = torch::randn({rows, d}, options.dtype(torch::kDouble));
  auto y = fused::dropout(x, p, seed);
  auto g = gradients(y, dy, {x});
  auto keep = fused::dropout_keep_mask(rows, d, p, seed).to(device, torch::kDouble);
  const double scale = 1.0 / (1.0 - kept_scale_p(p));
  Outcome o;
  o.value_error = relative_error(y, x.to(torch::kDouble) * keep * scale);
  o.gradient_error = relative_error(g[0], dy * keep * scale);
  o.kept = keep.mean().item<double>();
  if (iters > 0) {
    auto dyc = dy.to(dtype);
    o.fused_ms = median_ms([&] { fused::dropout(x, p).backward(dyc); }, device, iters);
    o.unfused_ms = median_ms([&] { torch::dropout(x, p, true).backward(dyc); }, device, iters);
  }
  return o;
}

}  // namespace

Napi::Value fused_kernels_info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto o = Napi::Object::New(env);
    o.Set("cuda", Napi::Boolean::New(env, fused::cuda_kernels_built()));
    auto cpu = Napi::Object::New(env);
    cpu.Set("residualRmsNorm", Napi::Boolean::New(env, fused::used_on_cpu.residual_rms_norm));
    cpu.Set("rotary", Napi::Boolean::New(env, fused::used_on_cpu.rotary));
    cpu.Set("embeddingRmsNorm", Napi::Boolean::New(env, fused::used_on_cpu.embedding_rms_norm));
    cpu.Set("dropout", Napi::Boolean::New(env, fused::used_on_cpu.dropout));
    cpu.Set("softmaxDropout", Napi::Boolean::New(env, fused::used_on_cpu.softmax_dropout));
    cpu.Set("relu", Napi::Boolean::New(env, fused::used_on_cpu.relu));
    o.Set("usedOnCpu", cpu);
    o.Set("cpuDropoutDraw", Napi::String::New(env, kernels::keep_flags_isa()));
    return o;
  });
}

// Attention's softmax-then-dropout kernel on (rows, d) scores (every third row with some keys
// masked to −inf) against softmax·keep/(1−p) by autograd in float64, with dropout_keep_mask's mask;
// timed against the chain the model ran before it: libtorch's softmax, then the dropout kernel.
Outcome check_softmax_dropout(torch::Device device, torch::ScalarType dtype, double p, uint64_t seed, int64_t rows,
                              int64_t d, int iters) {
  auto options = torch::TensorOptions().device(device);
  auto masked = (torch::arange(rows, options.dtype(torch::kLong)).remainder(3) == 0).unsqueeze(1) &
                (torch::arange(d, options.dtype(torch::kLong)).remainder(5) == 2).unsqueeze(0);
  auto s = leaf((torch::randn({rows, d}, options.dtype(torch::kDouble)) * 3)
                    .masked_fill(masked, -std::numeric_limits<double>::infinity())
                    .to(dtype));
  auto dy = torch::randn({rows, d}, options.dtype(torch::kDouble));
  auto y = fused::softmax_dropout(s, p, seed);
  auto g = gradients(y, dy, {s});
  auto keep = fused::dropout_keep_mask(rows, d, p, seed).to(device, torch::kDouble);
  auto sr = leaf(s.to(torch::kDouble));
  auto ref = sr.softmax(-1) * keep / (1.0 - kept_scale_p(p));
  auto gr = gradients(ref, dy, {sr});
  Outcome o;
  o.value_error = relative_error(y, ref);
  o.gradient_error = relative_error(g[0], gr[0]);
  o.kept = keep.mean().item<double>();
  if (iters > 0) {
    auto dyc = dy.to(dtype);
    o.fused_ms = median_ms([&] { fused::softmax_dropout(s, p).backward(dyc); }, device, iters);
    o.unfused_ms = median_ms([&] { fused::dropout(s.softmax(-1), p).backward(dyc); }, device, iters);
  }
  return o;
}

// Attention's two batched products, as the model forms them: q, k and v (batch, heads, seq,
// head_dim) views of (batch, seq, heads, head_dim) tensors, scores = q·kᵀ/√head_dim (the scale in
// the product), out = scores·v stored heads-last so that joining the heads is a view (.view()
// below throws where it is not); values and the gradients of q, k and v against torch::matmul in
// float64. Timed against torch::matmul.
Outcome check_batched_matmul(torch::Device device, torch::ScalarType dtype, int64_t batch, int64_t seq, int64_t heads,
                             int64_t head_dim, int iters) {
  auto options = torch::TensorOptions().device(device).dtype(dtype);
  auto heads_first = [&] { return leaf(torch::randn({batch, seq, heads, head_dim}, options)); };
  auto q = heads_first(), k = heads_first(), v = heads_first();
  auto dy = torch::randn({batch, seq, heads * head_dim}, options.dtype(torch::kDouble));
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));  // attention's, in the scores' product
  auto ours = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    auto scores = compute::batched_matmul(q.transpose(1, 2), k.transpose(1, 2).transpose(-2, -1),
                                          /*heads_last_out=*/false, scale);
    return compute::batched_matmul(scores, v.transpose(1, 2), /*heads_last_out=*/true)
        .transpose(1, 2)
        .view({batch, seq, heads * head_dim});
  };
  auto y = ours(q, k, v);
  auto g = gradients(y, dy, {q, k, v});
  auto qr = leaf(q.to(torch::kDouble)), kr = leaf(k.to(torch::kDouble)), vr = leaf(v.to(torch::kDouble));
  auto reference = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    auto scores = torch::matmul(q.transpose(1, 2), k.transpose(1, 2).transpose(-2, -1)) * scale;
    return torch::matmul(scores, v.transpose(1, 2)).transpose(1, 2).reshape({batch, seq, heads * head_dim});
  };
  auto ref = reference(qr, kr, vr);
  auto gr = gradients(ref, dy, {qr, kr, vr});
  Outcome o;
  o.value_error = relative_error(y, ref);
  for (size_t i = 0; i < g.size(); ++i) o.gradient_error = std::max(o.gradient_error, relative_error(g[i], gr[i]));
  if (iters > 0) {
    auto dyc = dy.to(dtype);
    o.fused_ms = median_ms([&] { ours(q, k, v).backward(dyc); }, device, iters);
    o.unfused_ms = median_ms([&] { reference(q, k, v).backward(dyc); }, device, iters);
  }
  return o;
}

// The feed-forward's ReLU kernel (in place, on a copy of a leaf) on (rows, d) values with exact
// zeros, ±infinity and NaN of both signs among them, against libtorch's relu in float64 by autograd:
// values and gradients equal, NaN where the reference has NaN; timed against x.relu_().
Outcome check_relu(torch::ScalarType dtype, int64_t rows, int64_t d, int iters) {
  auto base = torch::randn({rows, d}, torch::kDouble);
  auto flat = base.view({-1});
  const double specials[] = {0.0, -0.0, std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::quiet_NaN()};
  for (int64_t i = 0; i < flat.numel(); i += 7) flat[i] = specials[(i / 7) % 6];
  auto x = leaf(base.to(dtype));
  auto dy = torch::randn({rows, d}, torch::kDouble);
  auto y = fused::relu_(x * 1);  // a non-leaf to work in place on, as the model's linear output
  auto g = gradients(y, dy, {x})[0].to(torch::kDouble);
  auto xr = leaf(x.to(torch::kDouble));
  auto ref = torch::relu(xr);
  auto gr = gradients(ref, dy.to(torch::kDouble), {xr})[0];
  // equal where finite, NaN where the reference is NaN: errors 0 or infinite
  auto differs = [](const Tensor& out, const Tensor& want) {
    const auto nan = want.isnan();
    const bool same_nans = out.isnan().eq(nan).all().item<bool>();
    const bool same_values = out.masked_fill(nan, 0).eq(want.masked_fill(nan, 0)).all().item<bool>();
    return same_nans && same_values ? 0.0 : std::numeric_limits<double>::infinity();
  };
  // a bf16 value is exact in float64: compare the output's bits' value with the reference's
  Outcome o;
  o.value_error = differs(y.to(torch::kDouble), ref.to(dtype).to(torch::kDouble));
  o.gradient_error = differs(g, gr.to(dtype).to(torch::kDouble));
  if (iters > 0) {
    auto dyc = dy.to(dtype);
    o.fused_ms = median_ms([&] { fused::relu_(x * 1).backward(dyc); }, torch::kCPU, iters);
    o.unfused_ms = median_ms([&] { (x * 1).relu_().backward(dyc); }, torch::kCPU, iters);
  }
  return o;
}

// fusedKernelCheck({ kernel, device, dtype, xDtype?, p?, seed?, batch?, seq?, hidden?, heads?, headsFirst?, iters? }):
// xDtype is the residual stream's dtype — the residual norm's x, the embedding norm's output —
// default dtype; headsFirst: RoPE's q, k and gradients as views of (batch, heads, seq, head_dim).
Napi::Value fused_kernel_check(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto o = require_object(info.Length() > 0 ? info[0] : env.Undefined(), "fusedKernelCheck options");
    const std::string where = "fusedKernelCheck: ";
    const auto kernel = string_field(o, "kernel", "", where);
    const auto device = parse_device(string_field(o, "device", "cpu", where));
    const auto dtype = parse_dtype(string_field(o, "dtype", "float64", where));
    const auto x_dtype = parse_dtype(string_field(o, "xDtype", string_field(o, "dtype", "float64", where), where));
    const double p = number_field(o, "p", 0.1, where);
    const auto seed = static_cast<uint64_t>(integer_field(o, "seed", 1234, where));
    const int64_t batch = integer_field(o, "batch", 2, where), seq = integer_field(o, "seq", 16, where);
    const int64_t hidden = integer_field(o, "hidden", 64, where), heads = integer_field(o, "heads", 4, where);
    const int iters = static_cast<int>(integer_field(o, "iters", 0, where));
    const bool heads_first = boolean_field(o, "headsFirst", false);
    require(p >= 0 && p < 1, where + "p must be in [0, 1)");
    Outcome r;
    if (kernel == "residual_rms_norm") r = check_residual(device, dtype, x_dtype, p, seed, batch * seq, hidden, iters);
    else if (kernel == "rotary") r = check_rotary(device, dtype, batch, seq, heads, hidden / heads, heads_first, iters);
    else if (kernel == "embedding_rms_norm") r = check_embedding(device, dtype, x_dtype, p, seed, batch, seq, hidden, iters);
    else if (kernel == "dropout") r = check_dropout(device, dtype, p, seed, batch * seq, hidden, iters);
    else if (kernel == "softmax_dropout") r = check_softmax_dropout(device, dtype, p, seed, batch * seq, hidden, iters);
    else if (kernel == "batched_matmul") r = check_batched_matmul(device, dtype, batch, seq, heads, hidden / heads, iters);
    else if (kernel == "relu") {
      require(device.is_cpu(), where + "the relu kernel is the CPU's");
      r = check_relu(dtype, batch * seq, hidden, iters);
    } else throw std::invalid_argument(where + "kernel must be residual_rms_norm, rotary, embedding_rms_norm, dropout, softmax_dropout, batched_matmul or relu, got '" + kernel + "'");
    const double limit = std::max(limit_for(dtype), limit_for(x_dtype));
    auto out = Napi::Object::New(env);
    out.Set("ok", Napi::Boolean::New(env, r.value_error <= limit && r.gradient_error <= limit));
    out.Set("valueError", Napi::Number::New(env, r.value_error));
    out.Set("gradientError", Napi::Number::New(env, r.gradient_error));
    out.Set("limit", Napi::Number::New(env, limit));
    out.Set("keptFraction", Napi::Number::New(env, r.kept));
    out.Set("fusedMs", Napi::Number::New(env, r.fused_ms));
    out.Set("unfusedMs", Napi::Number::New(env, r.unfused_ms));
    return out;
  });
}

}  // namespace roformer::js
