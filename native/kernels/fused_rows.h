// The arithmetic of the fused kernels, one row (or one pair) at a time, written once for the
// GPU and the CPU: under nvcc these are __host__ __device__ functions that the CUDA kernels
// (fused_kernels.cu) call with a warp (or, for long rows, a block) of threads per row; g++ compiles the same code for the
// CPU instantiation (fused_cpu.cpp), which runs a row with one "lane". No torch header here.
//
//   residual RMS norm   y = RMSNorm(x + α·dropout(f))         (every block's post-norm residual)
//   rotary              y = x·cos + swap(x)·sin±              (RoPE on q and k, interleaved pairs)
//   embedding RMS norm  y = RMSNorm(dropout(E_tok[id] + E_seg[type]))
//
// RMSNorm has no gain: y = h·r, r = 1/sqrt(mean(h²) + eps); its backward, from y and r alone,
// is dh = r·(dy − y·mean(dy·y)). Math is in Acc (float on the GPU, double in the CPU tests);
// storage T can be narrower (bf16, fp16).
//
// Dropout masks are never stored: both directions regenerate them from (seed, offset) with
// Philox4x32-10 (the generator cuRAND and PyTorch's CUDA kernels use), one call per group of 4
// consecutive elements of a row-major (rows, d) tensor: key = seed, counter = (group index,
// offset), and element 4g+k keeps when its uniform u_k = (word_k >> 8)·2⁻²⁴ is ≥ p. The CPU
// instantiation runs the same function, so CPU and GPU masks are bit-identical for one seed.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define ROFORMER_HD __host__ __device__ __forceinline__
#else
#define ROFORMER_HD inline
#endif

namespace roformer::kernels {

// Philox4x32-10: 4 random words for counter (c0..c3) and key (k0, k1).
struct Words4 {
  uint32_t w[4];
};
ROFORMER_HD Words4 philox4x32_10(uint64_t counter_lo, uint64_t counter_hi, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Words4{{c0, c1, c2, c3}};
}

// The dropout of one row: p, the seed and offset of the mask, and the scale 1/(1−p) of what is kept.
// While a CUDA graph is captured the seed and offset are not known on the host: they are read on
// the device, where the CUDA generator writes them before each replay (libtorch's graph-safe
// Philox state), from seed_at and offset_at (the offset then adds to *offset_at); resolved()
// reads them once per kernel. Elsewhere both pointers are null and seed/offset are the values.
struct Dropout {
  float p = 0.0f;
  uint64_t seed = 0;
  uint64_t offset = 0;
  const int64_t* seed_at = nullptr;
  const int64_t* offset_at = nullptr;
  ROFORMER_HD bool active() const { return p > 0.0f; }
  ROFORMER_HD Dropout resolved() const {
    if (seed_at == nullptr) return *this;
    Dropout d = *this;
    d.seed = static_cast<uint64_t>(*seed_at);
    d.offset = static_cast<uint64_t>(*offset_at) + offset;
    d.seed_at = d.offset_at = nullptr;
    return d;
  }
  // Keep flags of elements 4g .. 4g+3 (group g of the whole tensor), as bits 0..3.
  ROFORMER_HD unsigned keep4(uint64_t group) const {
    if (!active()) return 0xFu;
    const Words4 r = philox4x32_10(group, offset, seed);
    unsigned bits = 0;
    for (int k = 0; k < 4; ++k) {
      const float u = static_cast<float>(r.w[k] >> 8) * (1.0f / 16777216.0f);
      if (u >= p) bits |= 1u << k;
    }
    return bits;
  }
  template <class Acc>
  ROFORMER_HD Acc scale() const {
    return active() ? Acc(1) / (Acc(1) - Acc(p)) : Acc(1);
  }
};

// The row functions below take the dropout as `Mask`: a Dropout (keep4 draws Philox for each group:
// the GPU's lanes each draw their own), or anything with the same keep4(group) and scale<Acc>() —
// the CPU's RowMask (fused_cpu.cpp), which serves a row's flags drawn ahead in one batch.

// The threads that share one row. On the CPU: one lane, and a sum is the value itself. On the
// GPU (fused_kernels.cu): a warp's or a block's threads, and sum() is a warp or block reduction
// that every lane calls and that returns the total to all of them.
struct SingleLane {
  static constexpr int lane = 0;
  static constexpr int count = 1;
  template <class Acc>
  Acc sum(Acc value) const { return value; }
};

// ---------------------------------------------------------------------------
// Residual RMS norm: h = x + α·keep·f/(1−p), y = h·r. The row's h is kept in `scratch` (d
// values of Acc: shared memory on the GPU) between the two passes. x, y and dx are T (the
// residual stream: float under autocast), f and df are F (the branch: bf16 under autocast); each lane reads back only the
// elements it wrote, so the passes need no barrier beyond the one inside sum(). Rows of length d, d % 4 == 0.
// ---------------------------------------------------------------------------
template <class Acc, class T, class F, class Lanes, class Mask>
ROFORMER_HD void residual_rms_norm_forward_row(const T* x, const F* f, T* y, Acc* inv_rms, Acc* scratch, int64_t row,
                                               int64_t d, Acc alpha, Acc eps, Mask dropout, const Lanes& lanes) {
  const int64_t base = row * d;
  const Acc scale = alpha * dropout.template scale<Acc>();
  Acc squares = 0;
  for (int64_t g = lanes.lane; g < d / 4; g += lanes.count) {
    const unsigned keep = dropout.keep4((base >> 2) + g);
    for (int k = 0; k < 4; ++k) {
      const int64_t j = 4 * g + k;
      const Acc h = static_cast<Acc>(x[base + j]) + ((keep >> k) & 1u ? scale * static_cast<Acc>(f[base + j]) : Acc(0));
      scratch[j] = h;
      squares += h * h;
    }
  }
  const Acc r = Acc(1) / std::sqrt(lanes.sum(squares) / static_cast<Acc>(d) + eps);
  for (int64_t j = 4 * lanes.lane; j < d; j += 4 * lanes.count)  // the elements this lane wrote
    for (int k = 0; k < 4; ++k) y[base + j + k] = static_cast<T>(scratch[j + k] * r);
  if (lanes.lane == 0) inv_rms[row] = r;
}

// dh = r·(dy − y·mean(dy·y)); dx = dh; df = α·keep·dh/(1−p).
template <class Acc, class T, class F, class Lanes, class Mask>
ROFORMER_HD void residual_rms_norm_backward_row(const T* dy, const T* y, const Acc* inv_rms, T* dx, F* df, int64_t row,
                                                int64_t d, Acc alpha, Mask dropout, const Lanes& lanes) {
  const int64_t base = row * d;
  Acc dot = 0;
  for (int64_t j = lanes.lane; j < d; j += lanes.count) dot += static_cast<Acc>(dy[base + j]) * static_cast<Acc>(y[base + j]);
  const Acc mean = lanes.sum(dot) / static_cast<Acc>(d);
  const Acc r = static_cast<Acc>(inv_rms[row]);
  const Acc scale = alpha * dropout.template scale<Acc>();
  for (int64_t g = lanes.lane; g < d / 4; g += lanes.count) {
    const unsigned keep = dropout.keep4((base >> 2) + g);
    for (int k = 0; k < 4; ++k) {
      const int64_t j = base + 4 * g + k;
      const Acc dh = r * (static_cast<Acc>(dy[j]) - static_cast<Acc>(y[j]) * mean);
      dx[j] = static_cast<T>(dh);
      df[j] = static_cast<F>((keep >> k) & 1u ? scale * dh : Acc(0));
    }
  }
}

// ---------------------------------------------------------------------------
// Rotary embedding of one pair (x_2i, x_2i+1) at one position: with sign = +1 the forward
//   y_2i = x_2i·cos − x_2i+1·sin,  y_2i+1 = x_2i+1·cos + x_2i·sin,
// and with sign = −1 its transpose (the backward: dx from dy).
// ---------------------------------------------------------------------------
template <class Acc, class T, class Index>
ROFORMER_HD void rotary_pair(const T* in, Index in_step, T* out, Acc cos, Acc sin, Acc sign) {
  const Acc a = static_cast<Acc>(in[0]), b = static_cast<Acc>(in[in_step]);
  const Acc s = sign * sin;
  out[0] = static_cast<T>(a * cos - b * s);
  out[1] = static_cast<T>(b * cos + a * s);
}

// Where q or k is read from: the strides, in elements, of its (batch, seq, heads, head_dim) view —
// a slice of a packed QKV projection in the forward, the gradient attention hands back (laid out
// (batch, heads, seq, head_dim), or with head_dim strided) in the backward.
template <class Index>
struct RotaryInput {
  Index batch, seq, head, dim;
};

// Pair `pair` of q or k (batch, seq, heads, head_dim): read through `in`'s strides, written to a
// contiguous output. The cos/sin tables have `table_rows` rows of head_dim: token t reads row
// t mod table_rows (seq rows: one table for every sequence; batch·seq rows: one row per token,
// e.g. positions restarting at each packed document). Index: the integer type of the index
// arithmetic — int64_t on the CPU; on the GPU uint32_t where every offset fits (a 64-bit
// division is a long software routine there, and this function makes seven per pair).
template <class Acc, class T, class Table, class Index = int64_t>
ROFORMER_HD void rotary_pair_at(const T* in, T* out, const Table* cos, const Table* sin, Index pair, Index table_rows,
                                Index seq, Index heads, Index head_dim, RotaryInput<Index> stride, Acc sign) {
  const Index half = head_dim / 2;
  const Index i = pair % half, row = pair / half;  // row = token·heads + head
  const Index token = row / heads, head = row % heads, position = token % table_rows;
  const Index b = token / seq, s = token % seq;
  const Index table = position * head_dim + 2 * i;
  rotary_pair<Acc, T, Index>(in + b * stride.batch + s * stride.seq + head * stride.head + 2 * i * stride.dim, stride.dim,
                             out + row * head_dim + 2 * i, static_cast<Acc>(cos[table]), static_cast<Acc>(sin[table]),
                             sign);
}

// Whether rotary_pair_at may take Index = uint32_t for `tokens` tokens: every offset it forms
// (inputs: below `in_extent`, the largest input offset + 1; outputs; tables) and `counter_end`
// (the end of the caller's loop counter) below 2³² − 1. The GPU launch and the CPU instantiation
// decide by this one rule.
inline bool rotary_fits_32_bits(int64_t tokens, int64_t heads, int64_t head_dim, int64_t in_extent, int64_t table_rows,
                                int64_t counter_end) {
  const int64_t limit = (int64_t{1} << 32) - 1;
  return counter_end < limit && in_extent < limit && tokens * heads * head_dim < limit && table_rows * head_dim < limit;
}

// One past the largest element offset of a (batch, seq, heads, head_dim) view read through `stride`.
inline int64_t rotary_input_extent(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                   RotaryInput<int64_t> stride) {
  return (batch - 1) * stride.batch + (seq - 1) * stride.seq + (heads - 1) * stride.head + (head_dim - 1) * stride.dim + 1;
}

// ---------------------------------------------------------------------------
// Embedding RMS norm: h = keep·(E_tok[id] + E_seg[type])/(1−p), y = h·r; the row is token `row`.
// ---------------------------------------------------------------------------
template <class Acc, class W, class T, class Lanes, class Mask>
ROFORMER_HD void embedding_rms_norm_forward_row(const int64_t* ids, const int64_t* type_ids, const W* tok, const W* seg,
                                                T* y, Acc* inv_rms, Acc* scratch, int64_t row, int64_t d, Acc eps,
                                                Mask dropout, const Lanes& lanes) {
  const W* a = tok + ids[row] * d;
  const W* b = seg + type_ids[row] * d;
  const Acc scale = dropout.template scale<Acc>();
  Acc squares = 0;
  for (int64_t g = lanes.lane; g < d / 4; g += lanes.count) {
    const unsigned keep = dropout.keep4(((row * d) >> 2) + g);
    for (int k = 0; k < 4; ++k) {
      const int64_t j = 4 * g + k;
      const Acc h = (keep >> k) & 1u ? scale * (static_cast<Acc>(a[j]) + static_cast<Acc>(b[j])) : Acc(0);
      scratch[j] = h;
      squares += h * h;
    }
  }
  const Acc r = Acc(1) / std::sqrt(lanes.sum(squares) / static_cast<Acc>(d) + eps);
  for (int64_t j = 4 * lanes.lane; j < d; j += 4 * lanes.count)  // the elements this lane wrote
    for (int k = 0; k < 4; ++k) y[row * d + j + k] = static_cast<T>(scratch[j + k] * r);
  if (lanes.lane == 0) inv_rms[row] = r;
}

// The gradient reaching both tables' rows: keep·dh/(1−p), handed to emit(j, value) for each
// element j of the row (the GPU adds it atomically into both tables' gradients; the CPU writes
// a (rows, d) buffer that is then index-added).
template <class Acc, class T, class Lanes, class Emit, class Mask>
ROFORMER_HD void embedding_rms_norm_backward_row(const T* dy, const T* y, const Acc* inv_rms, int64_t row, int64_t d,
                                                 Mask dropout, const Lanes& lanes, Emit emit) {
  const int64_t base = row * d;
  Acc dot = 0;
  for (int64_t j = lanes.lane; j < d; j += lanes.count) dot += static_cast<Acc>(dy[base + j]) * static_cast<Acc>(y[base + j]);
  const Acc mean = lanes.sum(dot) / static_cast<Acc>(d);
  const Acc r = static_cast<Acc>(inv_rms[row]);
  const Acc scale = dropout.template scale<Acc>();
  for (int64_t g = lanes.lane; g < d / 4; g += lanes.count) {
    const unsigned keep = dropout.keep4((base >> 2) + g);
    for (int k = 0; k < 4; ++k) {
      const int64_t j = 4 * g + k;
      if ((keep >> k) & 1u) emit(j, scale * r * (static_cast<Acc>(dy[base + j]) - static_cast<Acc>(y[base + j]) * mean));
    }
  }
}

}  // namespace roformer::kernels
