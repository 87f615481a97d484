#include "batched_matmul.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <vector>

// OpenBLAS's thread count, where libtorch's BLAS is OpenBLAS: weak, so that they resolve to null
// with any other BLAS (reference BLAS, MKL), and the path below is not taken.
// Its CBLAS products too (OpenBLAS exports them; the enums of cblas.h passed as their int values),
// called straight for each product: at::mm_out's dispatch costs as much as a 128 × 64 · 64 × 128 product.
extern "C" {
void openblas_set_num_threads(int threads) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
void cblas_dgemm(int order, int trans_a, int trans_b, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc) __attribute__((weak));
}

namespace roformer::compute {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// OpenBLAS on one thread while it lives: each of parallel_for's threads then runs its own
// products whole, instead of every product being split over threads that are already busy.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : previous_(openblas_get_num_threads()) {
    if (previous_ != 1) openblas_set_num_threads(1);
  }
  ~SingleThreadedBlas() {
    if (previous_ != 1) openblas_set_num_threads(previous_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_;
};

// Product i of the batch, as a 2-d view of t (the batch dimensions flattened in row-major order).
torch::Tensor matrix(const torch::Tensor& t, int64_t i) {
  int64_t offset = t.storage_offset();
  for (int64_t d = t.dim() - 3; d >= 0; --d) {
    offset += (i % t.size(d)) * t.stride(d);
    i /= t.size(d);
  }
  return t.as_strided({t.size(-2), t.size(-1)}, {t.stride(-2), t.stride(-1)}, offset);
}

// Where product i's matrix starts in t's storage (elements from t's data pointer).
int64_t matrix_offset(const torch::Tensor& t, int64_t i) {
  int64_t offset = 0;
  for (int64_t d = t.dim() - 3; d >= 0; --d) {
    offset += (i % t.size(d)) * t.stride(d);
    i /= t.size(d);
  }
  return offset;
}

// How BLAS reads a (rows, cols) matrix with strides (s0, s1): row-major with leading dimension ld,
// or its transpose stored row-major (column-major); nullopt where neither (a copy would be needed).
struct GemmOperand {
  bool transposed;
  int64_t ld;
};
std::optional<GemmOperand> gemm_operand(int64_t rows, int64_t cols, int64_t s0, int64_t s1) {
  if ((cols == 1 || s1 == 1) && (rows == 1 || s0 >= std::max<int64_t>(1, cols)))
    return GemmOperand{false, rows == 1 ? std::max<int64_t>(1, cols) : s0};
  if ((rows == 1 || s0 == 1) && (cols == 1 || s1 >= std::max<int64_t>(1, rows)))
    return GemmOperand{true, cols == 1 ? std::max<int64_t>(1, rows) : s1};
  return std::nullopt;
}

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;  // cblas.h's values

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float* c, int64_t ldc) {
  cblas_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), static_cast<float>(alpha), a, static_cast<int>(lda), b, static_cast<int>(ldb), 0.0f, c, static_cast<int>(ldc));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double* c, int64_t ldc) {
  cblas_dgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), 0.0, c, static_cast<int>(ldc));
}
bool has_gemm(float) { return cblas_sgemm != nullptr; }
bool has_gemm(double) { return cblas_dgemm != nullptr; }

// The batch's products by CBLAS on raw pointers; false (nothing done) where BLAS cannot read an
// operand in place or a size passes int.
template <class T>
bool products_by_cblas(const torch::Tensor& a, const torch::Tensor& b, double alpha, const torch::Tensor& out,
                       int64_t count) {
  const int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
  const auto la = gemm_operand(n, k, a.stride(-2), a.stride(-1));
  const auto lb = gemm_operand(k, m, b.stride(-2), b.stride(-1));
  const auto lc = gemm_operand(n, m, out.stride(-2), out.stride(-1));
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  if (!has_gemm(T{}) || !la || !lb || !lc || std::max({n, k, m, la->ld, lb->ld, lc->ld}) > kIntMax) return false;
  const T* pa = a.data_ptr<T>();
  const T* pb = b.data_ptr<T>();
  T* pc = out.data_ptr<T>();
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* ai = pa + matrix_offset(a, i);
      const T* bi = pb + matrix_offset(b, i);
      T* ci = pc + matrix_offset(out, i);
      if (!lc->transposed) {
        gemm(la->transposed, lb->transposed, n, m, k, alpha, ai, la->ld, bi, lb->ld, ci, lc->ld);
      } else {  // C stored column-major: Cᵀ = Bᵀ·Aᵀ, row-major
        gemm(!lb->transposed, !la->transposed, m, n, k, alpha, bi, lb->ld, ai, la->ld, ci, lc->ld);
      }
    }
  });
  return true;
}

// out[i] = alpha · a[i] · b[i] for every product i of the batch, written into out in place (through its strides).
void products_into(const torch::Tensor& a_in, const torch::Tensor& b_in, double alpha, const torch::Tensor& out) {
  // Detached: mm_out takes no operand that records gradients, and grad mode is per thread (the
  // worker threads' is on).
  const auto a = a_in.detach(), b = b_in.detach();
  int64_t count = 1;
  for (int64_t d = 0; d < a.dim() - 2; ++d) count *= a.size(d);
  SingleThreadedBlas one_thread;
  const bool done = a.scalar_type() == torch::kFloat ? products_by_cblas<float>(a, b, alpha, out, count)
                                                     : products_by_cblas<double>(a, b, alpha, out, count);
  if (done) return;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto result = matrix(out, i);
      at::addmm_out(result, result, matrix(a, i), matrix(b, i), /*beta=*/0, alpha);  // β = 0: result is not read
    }
  });
}

std::vector<int64_t> product_shape(const torch::Tensor& a, const torch::Tensor& b) {
  std::vector<int64_t> shape(a.sizes().begin(), a.sizes().end());
  shape.back() = b.size(-1);
  return shape;
}

class BatchedMatmul : public torch::autograd::Function<BatchedMatmul> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b, double alpha,
                               bool heads_last_out) {
    ctx->save_for_backward({a, b});
    ctx->saved_data["alpha"] = alpha;
    const auto shape = product_shape(a, b);
    torch::Tensor out;
    if (heads_last_out && shape.size() == 4) {
      // (B, H, n, m) over memory laid out as (B, n, H, m)
      const int64_t heads = shape[1], n = shape[2], m = shape[3];
      out = torch::empty_strided(shape, {n * heads * m, m, heads * m, 1}, a.options());
    } else {
      out = torch::empty(shape, a.options());
    }
    products_into(a, b, alpha, out);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &a = saved[0], &b = saved[1];
    const auto& g = grad_outputs[0];
    const double alpha = ctx->saved_data["alpha"].toDouble();
    torch::Tensor da, db;
    // Each gradient in its operand's own layout where that is dense (the rotated q and k: their
    // (batch, seq, heads, head_dim) memory, which RoPE's backward then reads straight through).
    if (ctx->needs_input_grad(0)) {
      da = torch::empty_like(a);
      products_into(g, b.transpose(-2, -1), alpha, da);
    }
    if (ctx->needs_input_grad(1)) {
      db = torch::empty_like(b);
      products_into(a.transpose(-2, -1), g, alpha, db);
    }
    return {da, db, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool batched_matmul_applies(const torch::Tensor& a, const torch::Tensor& b) {
  if (openblas_set_num_threads == nullptr || openblas_get_num_threads == nullptr) return false;
  const bool dtype = a.scalar_type() == b.scalar_type() &&
                     (a.scalar_type() == torch::kFloat || a.scalar_type() == torch::kDouble);
  if (!dtype || !a.is_cpu() || !b.is_cpu() || a.dim() < 3 || a.dim() != b.dim()) return false;
  for (int64_t d = 0; d < a.dim() - 2; ++d) {
    if (a.size(d) != b.size(d)) return false;
  }
  return a.size(-1) == b.size(-2) && a.numel() > 0 && b.numel() > 0;
}

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, bool heads_last_out, double alpha) {
  if (!batched_matmul_applies(a, b)) return torch::matmul(alpha == 1.0 ? a : a * alpha, b);
  return BatchedMatmul::apply(a, b, alpha, heads_last_out);
}

}  // namespace roformer::compute
