// The CPU instantiation of fused_rows.h: the same per-row code as the CUDA kernels, one lane per
// row, with a row's scratch on the stack of the loop (std::vector reused across the rows).
#include "fused_cpu.h"

#include "keep_flags_cpu.h"

#include <c10/util/BFloat16.h>  // libtorch's bf16 storage type (round to nearest even), no more of torch

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace roformer::kernels {

namespace {

// One row's dropout for the shared row code (fused_rows.h's Mask): the flags of its groups drawn
// ahead by draw_keep_flags into a buffer reused across the rows.
class RowMask {
 public:
  RowMask(const Dropout& dropout, int64_t d) : dropout_(dropout), flags_(static_cast<size_t>(d / 4)) {}
  // Draws the flags of the row whose first element is `first_element` (row · d).
  const RowMask& at(int64_t first_element) {
    first_ = static_cast<uint64_t>(first_element) >> 2;
    if (dropout_.active()) draw_keep_flags(dropout_, first_, static_cast<int64_t>(flags_.size()), flags_.data());
    return *this;
  }
  bool active() const { return dropout_.active(); }
  unsigned keep4(uint64_t group) const { return dropout_.active() ? flags_[group - first_] : 0xFu; }
  template <class Acc>
  Acc scale() const { return dropout_.template scale<Acc>(); }

 private:
  Dropout dropout_;
  std::vector<uint8_t> flags_;
  uint64_t first_ = 0;
};


// The residual norm's rows in float math (float or bf16 storage), written for the CPU's vector
// units: the dropout's keep flags expanded to a multiplier per element (kept·α/(1−p), or 0) from a
// 16-entry table of 4-float patterns, then straight loops the compiler vectorises (the shared row
// code, with its flag tests per element, stays scalar). Same arithmetic as
// residual_rms_norm_*_row (float math; the sums reassociated, as the GPU's block reduction does);
// float64 runs the shared row code, which the float64 tests check, and the fp32 and bf16 tests
// check these.
class RowMultipliers {
 public:
  RowMultipliers(const Dropout& dropout, float alpha, int64_t d) : mask_(dropout, d), m_(static_cast<size_t>(d)) {
    const float scale = alpha * dropout.template scale<float>();
    for (unsigned bits = 0; bits < 16; ++bits)
      for (int k = 0; k < 4; ++k) patterns_[bits][k] = (bits >> k) & 1u ? scale : 0.0f;
    if (!dropout.active()) std::fill(m_.begin(), m_.end(), scale);
  }
  // The multipliers of the row starting at element `first_element`.
  const float* at(int64_t first_element) {
    if (!mask_.active()) return m_.data();
    const RowMask& mask = mask_.at(first_element);
    const uint64_t first = static_cast<uint64_t>(first_element) >> 2;
    for (size_t g = 0; g < m_.size() / 4; ++g) std::copy_n(patterns_[mask.keep4(first + g)], 4, &m_[4 * g]);
    return m_.data();
  }

 private:
  RowMask mask_;
  std::vector<float> m_;
  float patterns_[16][4];
};

// S: the storage, float or bf16 (widened to float as it is read, rounded as it is written).
template <class S>
__attribute__((always_inline)) inline void residual_rows_forward(const S* x, const S* f, S* y, float* inv_rms,
                                                                 int64_t begin, int64_t end, int64_t d, float alpha,
                                                                 float eps, const Dropout& dropout) {
  RowMultipliers multipliers(dropout, alpha, d);
  std::vector<float> h(static_cast<size_t>(d));
  for (int64_t row = begin; row < end; ++row) {
    const float* m = multipliers.at(row * d);
    const S* xr = x + row * d;
    const S* fr = f + row * d;
    float squares = 0;
    for (int64_t j = 0; j < d; ++j) {
      h[j] = static_cast<float>(xr[j]) + m[j] * static_cast<float>(fr[j]);
      squares += h[j] * h[j];
    }
    const float r = 1.0f / std::sqrt(squares / static_cast<float>(d) + eps);
    S* yr = y + row * d;
    for (int64_t j = 0; j < d; ++j) yr[j] = static_cast<S>(h[j] * r);
    inv_rms[row] = r;
  }
}

template <class S>
__attribute__((always_inline)) inline void residual_rows_backward(const S* dy, const S* y, const float* inv_rms, S* dx,
                                                                  S* df, int64_t begin, int64_t end, int64_t d,
                                                                  float alpha, const Dropout& dropout) {
  RowMultipliers multipliers(dropout, alpha, d);
  for (int64_t row = begin; row < end; ++row) {
    const float* m = multipliers.at(row * d);
    const S* dyr = dy + row * d;
    const S* yr = y + row * d;
    float dot = 0;
    for (int64_t j = 0; j < d; ++j) dot += static_cast<float>(dyr[j]) * static_cast<float>(yr[j]);
    const float mean = dot / static_cast<float>(d), r = inv_rms[row];
    S* dxr = dx + row * d;
    S* dfr = df + row * d;
    for (int64_t j = 0; j < d; ++j) {
      const float dh = r * (static_cast<float>(dyr[j]) - static_cast<float>(yr[j]) * mean);
      dxr[j] = static_cast<S>(dh);
      dfr[j] = static_cast<S>(m[j] * dh);
    }
  }
}

// Each storage's rows built for its vector units (the loops above inlined into each clone).
__attribute__((target_clones("avx2", "default"))) void residual_rows_forward_float(
    const float* x, const float* f, float* y, float* inv_rms, int64_t begin, int64_t end, int64_t d, float alpha,
    float eps, Dropout dropout) {
  residual_rows_forward<float>(x, f, y, inv_rms, begin, end, d, alpha, eps, dropout);
}
__attribute__((target_clones("avx2", "default"))) void residual_rows_backward_float(
    const float* dy, const float* y, const float* inv_rms, float* dx, float* df, int64_t begin, int64_t end, int64_t d,
    float alpha, Dropout dropout) {
  residual_rows_backward<float>(dy, y, inv_rms, dx, df, begin, end, d, alpha, dropout);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void residual_rows_forward_bf16(
    const c10::BFloat16* x, const c10::BFloat16* f, c10::BFloat16* y, float* inv_rms, int64_t begin, int64_t end,
    int64_t d, float alpha, float eps, Dropout dropout) {
  residual_rows_forward<c10::BFloat16>(x, f, y, inv_rms, begin, end, d, alpha, eps, dropout);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void residual_rows_backward_bf16(
    const c10::BFloat16* dy, const c10::BFloat16* y, const float* inv_rms, c10::BFloat16* dx, c10::BFloat16* df,
    int64_t begin, int64_t end, int64_t d, float alpha, Dropout dropout) {
  residual_rows_backward<c10::BFloat16>(dy, y, inv_rms, dx, df, begin, end, d, alpha, dropout);
}

}  // namespace

template <class T, class Acc>
void residual_rms_norm_forward_cpu(const T* x, const T* f, T* y, Acc* inv_rms, int64_t begin, int64_t end, int64_t d,
                                   Acc alpha, Acc eps, Dropout dropout) {
  if constexpr (std::is_same_v<T, float>) {
    residual_rows_forward_float(x, f, y, inv_rms, begin, end, d, alpha, eps, dropout);
  } else if constexpr (std::is_same_v<T, c10::BFloat16> && std::is_same_v<Acc, float>) {
    residual_rows_forward_bf16(x, f, y, inv_rms, begin, end, d, alpha, eps, dropout);
  } else {
    std::vector<Acc> scratch(d);
    RowMask mask(dropout, d);
    for (int64_t row = begin; row < end; ++row)
      residual_rms_norm_forward_row<Acc, T, T>(x, f, y, inv_rms, scratch.data(), row, d, alpha, eps, mask.at(row * d),
                                               SingleLane{});
  }
}

template <class T, class Acc>
void residual_rms_norm_backward_cpu(const T* dy, const T* y, const Acc* inv_rms, T* dx, T* df, int64_t begin,
                                    int64_t end, int64_t d, Acc alpha, Dropout dropout) {
  if constexpr (std::is_same_v<T, float>) {
    residual_rows_backward_float(dy, y, inv_rms, dx, df, begin, end, d, alpha, dropout);
  } else if constexpr (std::is_same_v<T, c10::BFloat16> && std::is_same_v<Acc, float>) {
    residual_rows_backward_bf16(dy, y, inv_rms, dx, df, begin, end, d, alpha, dropout);
  } else {
    RowMask mask(dropout, d);
    for (int64_t row = begin; row < end; ++row)
      residual_rms_norm_backward_row<Acc, T, T>(dy, y, inv_rms, dx, df, row, d, alpha, mask.at(row * d), SingleLane{});
  }
}

// The pairs [begin, end) as the GPU maps them, one pair at a time (rotary_pair_at), with the GPU's
// choice of index type (rotary_fits_32_bits) for the launch's whole tensor.
template <class T, class Acc>
void rotary_pairs_as_on_gpu(const T* in, T* out, const Acc* cos, const Acc* sin, int64_t begin, int64_t end,
                            int64_t table_rows, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                            RotaryInput<int64_t> stride, Acc sign) {
  const int64_t tokens = batch * seq;
  if (rotary_fits_32_bits(tokens, heads, head_dim, rotary_input_extent(batch, seq, heads, head_dim, stride), table_rows,
                          tokens * heads * head_dim)) {
    using I = uint32_t;
    const RotaryInput<I> narrow{static_cast<I>(stride.batch), static_cast<I>(stride.seq), static_cast<I>(stride.head),
                                static_cast<I>(stride.dim)};
    for (int64_t pair = begin; pair < end; ++pair)
      rotary_pair_at<Acc, T, Acc, I>(in, out, cos, sin, static_cast<I>(pair), static_cast<I>(table_rows), static_cast<I>(seq),
                                     static_cast<I>(heads), static_cast<I>(head_dim), narrow, sign);
  } else {
    for (int64_t pair = begin; pair < end; ++pair)
      rotary_pair_at<Acc, T, Acc>(in, out, cos, sin, pair, table_rows, seq, heads, head_dim, stride, sign);
  }
}

// The same pairs a (token, head) row at a time: the row's offsets computed once, then its pairs
// in a loop without divisions. rotary_pair_at's seven divisions per pair made the CPU path
// slower than libtorch's chain. Inlined into the clones below (their vector units).
template <class T, class Acc>
__attribute__((always_inline)) inline void rotary_pairs_by_row(const T* in, T* out, const Acc* cos, const Acc* sin,
                                                               int64_t begin, int64_t end, int64_t table_rows, int64_t seq,
                                                               int64_t heads, int64_t head_dim,
                                                               RotaryInput<int64_t> stride, Acc sign) {
  const int64_t half = head_dim / 2;
  for (int64_t pair = begin; pair < end;) {
    const int64_t row = pair / half, first = pair % half;
    const int64_t last = std::min(end - row * half, half);  // one past the row's last pair in range
    const int64_t token = row / heads, head = row % heads, position = token % table_rows;
    const T* src = in + (token / seq) * stride.batch + (token % seq) * stride.seq + head * stride.head;
    T* dst = out + row * head_dim;
    const Acc* c = cos + position * head_dim;
    const Acc* s = sin + position * head_dim;
    if (stride.dim == 1) {
      // pairs side by side (the forward's q and k): a loop the compiler vectorises
      for (int64_t i = first; i < last; ++i)
        rotary_pair<Acc, T, int64_t>(src + 2 * i, 1, dst + 2 * i, c[2 * i], s[2 * i], sign);
    } else {
      for (int64_t i = first; i < last; ++i)
        rotary_pair<Acc, T, int64_t>(src + 2 * i * stride.dim, stride.dim, dst + 2 * i, c[2 * i], s[2 * i], sign);
    }
    pair = row * half + last;
  }
}

// The model's storages by rows, each built for its vector units (as the norms' rows above).
namespace {
__attribute__((target_clones("avx512f", "avx2", "default"))) void rotary_rows_float(
    const float* in, float* out, const float* cos, const float* sin, int64_t begin, int64_t end, int64_t table_rows,
    int64_t seq, int64_t heads, int64_t head_dim, RotaryInput<int64_t> stride, float sign) {
  rotary_pairs_by_row<float, float>(in, out, cos, sin, begin, end, table_rows, seq, heads, head_dim, stride, sign);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void rotary_rows_bf16(
    const c10::BFloat16* in, c10::BFloat16* out, const float* cos, const float* sin, int64_t begin, int64_t end,
    int64_t table_rows, int64_t seq, int64_t heads, int64_t head_dim, RotaryInput<int64_t> stride, float sign) {
  rotary_pairs_by_row<c10::BFloat16, float>(in, out, cos, sin, begin, end, table_rows, seq, heads, head_dim, stride,
                                            sign);
}
}  // namespace

template <class T, class Acc>
void rotary_cpu(const T* in, T* out, const Acc* cos, const Acc* sin, int64_t begin, int64_t end, int64_t table_rows,
                int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, RotaryInput<int64_t> stride, Acc sign) {
  // float64 (the tests' reference dtype) runs the GPU's own indexing, so that the float64 tests
  // check the index arithmetic the GPU runs; float and bf16 (the model's) run by rows, checked
  // against float64 by the fp32 and bf16 tests.
  if constexpr (std::is_same_v<T, double>)
    rotary_pairs_as_on_gpu<T, Acc>(in, out, cos, sin, begin, end, table_rows, batch, seq, heads, head_dim, stride, sign);
  else if constexpr (std::is_same_v<T, float>)
    rotary_rows_float(in, out, cos, sin, begin, end, table_rows, seq, heads, head_dim, stride, sign);
  else if constexpr (std::is_same_v<T, c10::BFloat16> && std::is_same_v<Acc, float>)
    rotary_rows_bf16(in, out, cos, sin, begin, end, table_rows, seq, heads, head_dim, stride, sign);
  else
    rotary_pairs_by_row<T, Acc>(in, out, cos, sin, begin, end, table_rows, seq, heads, head_dim, stride, sign);
}

template <class W, class T, class Acc>
void embedding_rms_norm_forward_cpu(const int64_t* ids, const int64_t* type_ids, const W* tok, const W* seg, T* y,
                                    Acc* inv_rms, int64_t begin, int64_t end, int64_t d, Acc eps, Dropout dropout) {
  std::vector<Acc> scratch(d);
  RowMask mask(dropout, d);
  for (int64_t row = begin; row < end; ++row)
    embedding_rms_norm_forward_row<Acc, W, T>(ids, type_ids, tok, seg, y, inv_rms, scratch.data(), row, d, eps,
                                              mask.at(row * d), SingleLane{});
}

template <class T, class Acc>
void embedding_rms_norm_backward_cpu(const T* dy, const T* y, const Acc* inv_rms, Acc* grad, int64_t begin, int64_t end,
                                     int64_t d, Dropout dropout) {
  RowMask mask(dropout, d);
  for (int64_t row = begin; row < end; ++row) {
    Acc* out = grad + row * d;
    for (int64_t j = 0; j < d; ++j) out[j] = Acc(0);  // dropped elements get no gradient
    embedding_rms_norm_backward_row<Acc, T>(dy, y, inv_rms, row, d, mask.at(row * d), SingleLane{},
                                            [out](int64_t j, Acc g) { out[j] = g; });
  }
}

template <class T, class Acc>
void dropout_cpu(const T* x, T* y, int64_t begin, int64_t end, Dropout dropout) {
  constexpr int64_t kBlock = 256;  // groups whose flags are drawn at once
  uint8_t flags[kBlock];
  // A group's 4 multipliers by its flags (scale where kept, 0 where dropped), copied out per block
  // into one multiplier per element: the product loop then has no test and vectorises.
  Acc patterns[16][4];
  const Acc scale = dropout.template scale<Acc>();
  for (unsigned bits = 0; bits < 16; ++bits) {
    for (int k = 0; k < 4; ++k) patterns[bits][k] = (bits >> k) & 1u ? scale : Acc(0);
  }
  Acc multipliers[4 * kBlock];
  for (int64_t first = begin; first < end; first += kBlock) {
    const int64_t n = std::min(kBlock, end - first);
    draw_keep_flags(dropout, static_cast<uint64_t>(first), n, flags);
    for (int64_t i = 0; i < n; ++i) std::memcpy(multipliers + 4 * i, patterns[flags[i]], sizeof(patterns[0]));
    const T* __restrict__ in = x + 4 * first;  // x and y are distinct (dropout_on_cpu allocates y)
    T* __restrict__ out = y + 4 * first;
    for (int64_t j = 0; j < 4 * n; ++j) out[j] = static_cast<T>(static_cast<Acc>(in[j]) * multipliers[j]);
  }
}

namespace {

// exp(x) for x ≤ 0, in a form a row's loop vectorises (a call to std::exp does not): Cephes'
// expf — x = n·ln2 + r with |r| ≤ ln2/2, eʳ by a degree-6 polynomial, 2ⁿ put into the exponent
// bits; within 2 ulp of expf. 0 below −87.3 (2ⁿ would leave the normal floats), and so for −inf
// (a masked key). double (the tests' reference dtype) keeps std::exp.
inline float exp_nonpositive(float x) {
  const float t = x * 1.44269504088896341f;                        // x·log₂e
  const int n = static_cast<int>((t < -126.0f ? -126.0f : t) - 0.5f);  // round(t) for t ≤ 0 (truncation)
  const float nf = static_cast<float>(n);
  const float r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f;   // x − n·ln2 in two parts (Cody–Waite)
  float poly = 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  const float e_r = poly * r * r + r + 1.0f;
  const int bits = (n + 127) << 23;  // 2ⁿ
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return x < -87.3f ? 0.0f : e_r * two_n;
}
inline double exp_nonpositive(double x) { return std::exp(x); }

// One multiplier per element of a row (scale where kept, 0 where dropped) for elements
// [first, first + n) of the tensor: the patterns table copied by groups where the row starts a group
// and spans whole groups, else element by element.
template <class Acc>
void row_multipliers(const Dropout& dropout, int64_t first, int64_t n, const Acc (*patterns)[4],
                     std::vector<uint8_t>& flags, Acc* m) {
  const int64_t g0 = first / 4, groups = (first + n + 3) / 4 - g0;
  flags.resize(static_cast<size_t>(groups));
  draw_keep_flags(dropout, static_cast<uint64_t>(g0), groups, flags.data());
  if (first % 4 == 0 && n % 4 == 0) {
    for (int64_t i = 0; i < groups; ++i) std::memcpy(m + 4 * i, patterns[flags[i]], sizeof(patterns[0]));
  } else {
    for (int64_t j = 0; j < n; ++j) m[j] = patterns[flags[(first + j) / 4 - g0]][(first + j) % 4];
  }
}

template <class Acc>
void fill_patterns(const Dropout& dropout, Acc (*patterns)[4]) {
  const Acc scale = dropout.template scale<Acc>();
  for (unsigned bits = 0; bits < 16; ++bits) {
    for (int k = 0; k < 4; ++k) patterns[bits][k] = (bits >> k) & 1u ? scale : Acc(0);
  }
}

// The largest of x[0 .. n), in 16 running maxima (one vector), which a single running maximum
// would not vectorise into.
template <class T, class Acc>
__attribute__((always_inline)) inline Acc row_max(const T* x, int64_t n) {
  constexpr int kLanes = 16;
  Acc lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -std::numeric_limits<Acc>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] = std::max(lanes[l], static_cast<Acc>(x[j + l]));
  }
  for (; j < n; ++j) lanes[0] = std::max(lanes[0], static_cast<Acc>(x[j]));
  Acc top = lanes[0];
  for (int l = 1; l < kLanes; ++l) top = std::max(top, lanes[l]);
  return top;
}

// Rows [begin, end) of softmax-then-dropout, n elements a row: p = softmax(s), d = keep·p/(1−p).
template <class T, class Acc>
__attribute__((always_inline)) inline void softmax_dropout_rows(const T* s, T* probs, T* dropped, int64_t begin, int64_t end, int64_t n,
                                 const Dropout& dropout) {
  std::vector<Acc> e(static_cast<size_t>(n)), m(static_cast<size_t>(n), dropout.template scale<Acc>());
  std::vector<uint8_t> flags;
  Acc patterns[16][4];
  fill_patterns(dropout, patterns);
  for (int64_t row = begin; row < end; ++row) {
    const T* __restrict__ in = s + row * n;
    T* __restrict__ p = probs + row * n;
    T* __restrict__ d = dropped + row * n;
    Acc* __restrict__ ex = e.data();
    Acc* __restrict__ mult = m.data();
    const Acc top = row_max<T, Acc>(in, n);
    if (!(top > -std::numeric_limits<Acc>::infinity())) {  // every key masked: NaN, as libtorch's softmax
      for (int64_t j = 0; j < n; ++j) p[j] = d[j] = static_cast<T>(std::numeric_limits<Acc>::quiet_NaN());
      continue;
    }
    Acc sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      ex[j] = exp_nonpositive(static_cast<Acc>(in[j]) - top);
      sum += ex[j];
    }
    const Acc inv = Acc(1) / sum;
    if (dropout.active()) row_multipliers(dropout, row * n, n, patterns, flags, mult);
    for (int64_t j = 0; j < n; ++j) {
      const Acc pj = ex[j] * inv;
      p[j] = static_cast<T>(pj);
      d[j] = static_cast<T>(pj * mult[j]);
    }
  }
}

// Its backward: with dp = keep·dd/(1−p) and d = keep·p/(1−p), p·dp = d·dd, so
// ds = p ⊙ (dp − Σ p·dp) = d ⊙ dd − p·Σ d·dd: no mask needed, d is kept for the next product's backward anyway.
template <class T, class Acc>
__attribute__((always_inline)) inline void softmax_dropout_backward_rows(const T* dd, const T* dropped, const T* probs, T* ds, int64_t begin,
                                          int64_t end, int64_t n) {
  for (int64_t row = begin; row < end; ++row) {
    const T* __restrict__ g = dd + row * n;
    const T* __restrict__ d = dropped + row * n;
    const T* __restrict__ p = probs + row * n;
    T* __restrict__ out = ds + row * n;
    Acc c = 0;
    for (int64_t j = 0; j < n; ++j) c += static_cast<Acc>(d[j]) * static_cast<Acc>(g[j]);
    for (int64_t j = 0; j < n; ++j)
      out[j] = static_cast<T>(static_cast<Acc>(d[j]) * static_cast<Acc>(g[j]) - static_cast<Acc>(p[j]) * c);
  }
}

// The float rows built for AVX-512, AVX2 and the baseline ISA (the loops above inlined into each:
// always_inline, or GCC calls the one baseline-ISA copy from every clone).
__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_dropout_rows_float(
    const float* s, float* probs, float* dropped, int64_t begin, int64_t end, int64_t n, const Dropout& dropout) {
  softmax_dropout_rows<float, float>(s, probs, dropped, begin, end, n, dropout);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_dropout_backward_rows_float(
    const float* dd, const float* dropped, const float* probs, float* ds, int64_t begin, int64_t end, int64_t n) {
  softmax_dropout_backward_rows<float, float>(dd, dropped, probs, ds, begin, end, n);
}
// bf16 storage, float math: the same loops, widening and rounding in them.
__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_dropout_rows_bf16(
    const c10::BFloat16* s, c10::BFloat16* probs, c10::BFloat16* dropped, int64_t begin, int64_t end, int64_t n,
    const Dropout& dropout) {
  softmax_dropout_rows<c10::BFloat16, float>(s, probs, dropped, begin, end, n, dropout);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_dropout_backward_rows_bf16(
    const c10::BFloat16* dd, const c10::BFloat16* dropped, const c10::BFloat16* probs, c10::BFloat16* ds,
    int64_t begin, int64_t end, int64_t n) {
  softmax_dropout_backward_rows<c10::BFloat16, float>(dd, dropped, probs, ds, begin, end, n);
}

}  // namespace

template <class T, class Acc>
void softmax_dropout_forward_cpu(const T* s, T* probs, T* dropped, int64_t begin, int64_t end, int64_t n,
                                 Dropout dropout) {
  if constexpr (std::is_same_v<T, float>)
    softmax_dropout_rows_float(s, probs, dropped, begin, end, n, dropout);
  else if constexpr (std::is_same_v<T, c10::BFloat16> && std::is_same_v<Acc, float>)
    softmax_dropout_rows_bf16(s, probs, dropped, begin, end, n, dropout);
  else
    softmax_dropout_rows<T, Acc>(s, probs, dropped, begin, end, n, dropout);
}

template <class T, class Acc>
void softmax_dropout_backward_cpu(const T* dd, const T* dropped, const T* probs, T* ds, int64_t begin, int64_t end,
                                  int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    softmax_dropout_backward_rows_float(dd, dropped, probs, ds, begin, end, n);
  else if constexpr (std::is_same_v<T, c10::BFloat16> && std::is_same_v<Acc, float>)
    softmax_dropout_backward_rows_bf16(dd, dropped, probs, ds, begin, end, n);
  else
    softmax_dropout_backward_rows<T, Acc>(dd, dropped, probs, ds, begin, end, n);
}

namespace {
// ReLU by element. bf16 works on its bits in 16-bit integer lanes, which the compiler vectorises
// for AVX2 (the AVX-512 variant of 16-bit lanes, BW, has no target_clones name of its own: "arch="
// picks by CPU model, and this machine's is no Skylake): a value is negative (to zero) when its
// sign bit is set and it is no NaN (magnitude bits ≤ infinity's 0x7f80); the backward keeps dy
// where y > 0 (as int16: positive, not zero) or y is NaN. libtorch 1.13's bf16 relu converts one
// element at a time: ~0.8 ms for the 1.6M elements of one small-model layer at 8 × 128, where
// this forward takes ~0.12 ms and the backward ~0.33 ms (one thread).
template <class T>
__attribute__((always_inline)) inline void relu_elements(T* x, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) x[i] = x[i] < T(0) ? T(0) : x[i];
}
template <class T>
__attribute__((always_inline)) inline void relu_backward_elements(const T* dy, const T* y, T* dx, int64_t begin,
                                                                  int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const T g = dy[i];  // loaded whatever y is: a select, not a branch around the load
    dx[i] = y[i] <= T(0) ? T(0) : g;
  }
}
__attribute__((always_inline)) inline void relu_bf16_bits(uint16_t* x, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const uint16_t b = x[i];
    // signed 16-bit comparisons only (AVX2 has no unsigned ones), & not && (no branch)
    const bool negative = (static_cast<int16_t>(b) < 0) & (static_cast<int16_t>(b & 0x7fffu) <= int16_t{0x7f80});
    x[i] = negative ? uint16_t{0} : b;
  }
}
__attribute__((always_inline)) inline void relu_backward_bf16_bits(const uint16_t* dy, const uint16_t* y, uint16_t* dx,
                                                                   int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const uint16_t b = y[i], g = dy[i];
    const bool keep = (static_cast<int16_t>(b) > 0) | (static_cast<int16_t>(b & 0x7fffu) > int16_t{0x7f80});
    dx[i] = keep ? g : uint16_t{0};
  }
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void relu_float(float* x, int64_t begin, int64_t end) {
  relu_elements(x, begin, end);
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void relu_backward_float(const float* dy, const float* y,
                                                                                     float* dx, int64_t begin,
                                                                                     int64_t end) {
  relu_backward_elements(dy, y, dx, begin, end);
}
__attribute__((target_clones("avx2", "default"))) void relu_bf16(uint16_t* x, int64_t begin, int64_t end) {
  relu_bf16_bits(x, begin, end);
}
__attribute__((target_clones("avx2", "default"))) void relu_backward_bf16(const uint16_t* dy, const uint16_t* y,
                                                                          uint16_t* dx, int64_t begin, int64_t end) {
  relu_backward_bf16_bits(dy, y, dx, begin, end);
}
}  // namespace

template <class T>
void relu_forward_cpu(T* x, int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<T, float>)
    relu_float(x, begin, end);
  else if constexpr (std::is_same_v<T, c10::BFloat16>)
    relu_bf16(reinterpret_cast<uint16_t*>(x), begin, end);
  else
    relu_elements(x, begin, end);
}

template <class T>
void relu_backward_cpu(const T* dy, const T* y, T* dx, int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<T, float>)
    relu_backward_float(dy, y, dx, begin, end);
  else if constexpr (std::is_same_v<T, c10::BFloat16>)
    relu_backward_bf16(reinterpret_cast<const uint16_t*>(dy), reinterpret_cast<const uint16_t*>(y),
                       reinterpret_cast<uint16_t*>(dx), begin, end);
  else
    relu_backward_elements(dy, y, dx, begin, end);
}

template void relu_forward_cpu<float>(float*, int64_t, int64_t);
template void relu_forward_cpu<double>(double*, int64_t, int64_t);
template void relu_forward_cpu<c10::BFloat16>(c10::BFloat16*, int64_t, int64_t);
template void relu_backward_cpu<float>(const float*, const float*, float*, int64_t, int64_t);
template void relu_backward_cpu<double>(const double*, const double*, double*, int64_t, int64_t);
template void relu_backward_cpu<c10::BFloat16>(const c10::BFloat16*, const c10::BFloat16*, c10::BFloat16*, int64_t,
                                               int64_t);

void dropout_keep_mask(uint8_t* keep, int64_t rows, int64_t d, Dropout dropout) {
  for (int64_t g = 0; g < rows * d / 4; ++g) {
    const unsigned bits = dropout.keep4(g);
    for (int k = 0; k < 4; ++k) keep[4 * g + k] = (bits >> k) & 1u;
  }
}

// Storage T with math in Acc; W, the embedding tables: float or double (the master weights).
#define ROFORMER_FUSED_CPU_NORMS(T, Acc, W)                                                                             \
  template void residual_rms_norm_forward_cpu<T, Acc>(const T*, const T*, T*, Acc*, int64_t, int64_t, int64_t, Acc,   \
                                                      Acc, Dropout);                                                  \
  template void residual_rms_norm_backward_cpu<T, Acc>(const T*, const T*, const Acc*, T*, T*, int64_t, int64_t,      \
                                                       int64_t, Acc, Dropout);                                        \
  template void embedding_rms_norm_forward_cpu<W, T, Acc>(const int64_t*, const int64_t*, const W*, const W*, T*,     \
                                                          Acc*, int64_t, int64_t, int64_t, Acc, Dropout);             \
  template void embedding_rms_norm_backward_cpu<T, Acc>(const T*, const T*, const Acc*, Acc*, int64_t, int64_t,       \
                                                        int64_t, Dropout);
ROFORMER_FUSED_CPU_NORMS(float, float, float)
ROFORMER_FUSED_CPU_NORMS(double, double, double)
ROFORMER_FUSED_CPU_NORMS(c10::BFloat16, float, float)

#define ROFORMER_FUSED_CPU_ROTARY(T, Acc)                                                                           \
  template void rotary_cpu<T, Acc>(const T*, T*, const Acc*, const Acc*, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                   int64_t, int64_t, RotaryInput<int64_t>, Acc);
ROFORMER_FUSED_CPU_ROTARY(float, float)
template void dropout_cpu<float, float>(const float*, float*, int64_t, int64_t, Dropout);
template void dropout_cpu<double, double>(const double*, double*, int64_t, int64_t, Dropout);
template void dropout_cpu<c10::BFloat16, float>(const c10::BFloat16*, c10::BFloat16*, int64_t, int64_t, Dropout);
ROFORMER_FUSED_CPU_ROTARY(double, double)
ROFORMER_FUSED_CPU_ROTARY(c10::BFloat16, float)

#define ROFORMER_FUSED_CPU_SOFTMAX_DROPOUT(T, Acc)                                                        \
  template void softmax_dropout_forward_cpu<T, Acc>(const T*, T*, T*, int64_t, int64_t, int64_t, Dropout); \
  template void softmax_dropout_backward_cpu<T, Acc>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);
ROFORMER_FUSED_CPU_SOFTMAX_DROPOUT(float, float)
ROFORMER_FUSED_CPU_SOFTMAX_DROPOUT(double, double)
ROFORMER_FUSED_CPU_SOFTMAX_DROPOUT(c10::BFloat16, float)

}  // namespace roformer::kernels
