// Dropout's keep flags drawn in vector lanes: Philox4x32-10 on 16 (AVX-512) or 8 (AVX2) groups at
// once, written with intrinsics, each lane bit-identical to Dropout::keep4. Written as plain loops
// over lanes, GCC's vector code took 7.2 ns a group on this project's machine (it shuffles the
// 64-bit products apart and together again every round); with intrinsics AVX-512 takes 2.1 ns.
// Philox's round: (hi, lo) = M·x split into 32-bit halves, two such products per round, XORed with
// the other words and the round key.
#include "keep_flags_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__) && defined(__GNUC__)
// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 headers (the
// _mm512_undefined_* they use on purpose); nothing of ours is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define ROFORMER_X86_DRAW 1
#endif

namespace roformer::kernels {

namespace {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;    // Philox4x32's multipliers
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // its key schedule

// keep4 keeps element k when (word_k >> 8)·2⁻²⁴ ≥ p, both sides exact in float: for the integer
// word_k >> 8 that is word_k >> 8 ≥ ⌈p·2²⁴⌉.
uint32_t keep_threshold(const Dropout& dropout) {
  return static_cast<uint32_t>(std::ceil(dropout.p * 16777216.0f));
}

// Any CPU: lanes as plain loops (the compiler vectorises what it can).
void draw_portable(const Dropout& dropout, uint64_t first, int64_t n, uint8_t* flags) {
  constexpr int kLanes = 16;
  const uint32_t c2 = static_cast<uint32_t>(dropout.offset), c3 = static_cast<uint32_t>(dropout.offset >> 32);
  const uint32_t threshold = keep_threshold(dropout);
  for (int64_t base = 0; base < n; base += kLanes) {
    uint32_t x0[kLanes], x1[kLanes], x2[kLanes], x3[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      const uint64_t group = first + static_cast<uint64_t>(base + l);
      x0[l] = static_cast<uint32_t>(group);
      x1[l] = static_cast<uint32_t>(group >> 32);
      x2[l] = c2;
      x3[l] = c3;
    }
    uint32_t k0 = static_cast<uint32_t>(dropout.seed), k1 = static_cast<uint32_t>(dropout.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      for (int l = 0; l < kLanes; ++l) {
        const uint64_t p0 = static_cast<uint64_t>(kMul0) * x0[l];
        const uint64_t p1 = static_cast<uint64_t>(kMul1) * x2[l];
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ x1[l] ^ k0;
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ x3[l] ^ k1;
        x1[l] = static_cast<uint32_t>(p1);
        x3[l] = static_cast<uint32_t>(p0);
        x0[l] = n0;
        x2[l] = n2;
      }
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    const int64_t lanes = std::min<int64_t>(kLanes, n - base);
    for (int l = 0; l < lanes; ++l) {
      const uint32_t words[4] = {x0[l], x1[l], x2[l], x3[l]};
      unsigned bits = 0;
      for (int k = 0; k < 4; ++k) bits |= static_cast<unsigned>((words[k] >> 8) >= threshold) << k;
      flags[base + l] = static_cast<uint8_t>(bits);
    }
  }
}

#ifdef ROFORMER_X86_DRAW

// The 16 lanes' M·x as high and low 32-bit halves: _mm512_mul_epu32 multiplies the even lanes
// into 64-bit products; the odd lanes are shifted down and multiplied the same way.
__attribute__((target("avx512f"))) inline void mul_hi_lo_16(__m512i x, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(x, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

__attribute__((target("avx512f"))) void draw_avx512(const Dropout& dropout, uint64_t first, int64_t n,
                                                    uint8_t* flags) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(kMul0)), m1 = _mm512_set1_epi32(static_cast<int>(kMul1));
  const __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(dropout.offset)));
  const __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(dropout.offset >> 32)));
  const __m512i threshold = _mm512_set1_epi32(static_cast<int>(keep_threshold(dropout)));
  for (int64_t base = 0; base < n; base += 16) {
    // The counter: group number first + base + lane, its low word wrapping into the high one.
    const uint64_t group = first + static_cast<uint64_t>(base);
    const __m512i low = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(group)));
    const __m512i high = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(group >> 32)));
    __m512i x0 = _mm512_add_epi32(low, lane);
    const __mmask16 carry = _mm512_cmplt_epu32_mask(x0, low);
    __m512i x1 = _mm512_mask_add_epi32(high, carry, high, _mm512_set1_epi32(1));
    __m512i x2 = c2, x3 = c3;
    uint32_t k0 = static_cast<uint32_t>(dropout.seed), k1 = static_cast<uint32_t>(dropout.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m512i hi0, lo0, hi1, lo1;
      mul_hi_lo_16(x0, m0, hi0, lo0);
      mul_hi_lo_16(x2, m1, hi1, lo1);
      // 0x96: a ^ b ^ c
      const __m512i n0 = _mm512_ternarylogic_epi32(hi1, x1, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
      const __m512i n2 = _mm512_ternarylogic_epi32(hi0, x3, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
      x1 = lo1;
      x3 = lo0;
      x0 = n0;
      x2 = n2;
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    const __mmask16 keep0 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(x0, 8), threshold);
    const __mmask16 keep1 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(x1, 8), threshold);
    const __mmask16 keep2 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(x2, 8), threshold);
    const __mmask16 keep3 = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(x3, 8), threshold);
    __m512i bits = _mm512_maskz_set1_epi32(keep0, 1);
    bits = _mm512_mask_or_epi32(bits, keep1, bits, _mm512_set1_epi32(2));
    bits = _mm512_mask_or_epi32(bits, keep2, bits, _mm512_set1_epi32(4));
    bits = _mm512_mask_or_epi32(bits, keep3, bits, _mm512_set1_epi32(8));
    alignas(16) uint8_t out[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(bits));
    std::memcpy(flags + base, out, static_cast<size_t>(std::min<int64_t>(16, n - base)));
  }
}

// The 8 lanes' M·x as high and low halves (AVX2: even lanes, then the odd ones shifted down).
__attribute__((target("avx2"))) inline void mul_hi_lo_8(__m256i x, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(x, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// `bit` in the lanes whose word keeps its element (word >> 8 > below), 0 in the others.
__attribute__((target("avx2"))) inline __m256i kept_bit_8(__m256i x, __m256i below, int bit) {
  return _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_srli_epi32(x, 8), below), _mm256_set1_epi32(bit));
}

__attribute__((target("avx2"))) void draw_avx2(const Dropout& dropout, uint64_t first, int64_t n, uint8_t* flags) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kMul0)), m1 = _mm256_set1_epi32(static_cast<int>(kMul1));
  const __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(dropout.offset)));
  const __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(dropout.offset >> 32)));
  // word >> 8 < 2²⁴ and the threshold ≤ 2²⁴: a signed comparison (AVX2 has no unsigned one) is exact.
  const __m256i below = _mm256_set1_epi32(static_cast<int>(keep_threshold(dropout)) - 1);
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  for (int64_t base = 0; base < n; base += 8) {
    const uint64_t group = first + static_cast<uint64_t>(base);
    const __m256i low = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(group)));
    const __m256i high = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(group >> 32)));
    __m256i x0 = _mm256_add_epi32(low, lane);
    // carry where x0 < low as unsigned numbers: flip the sign bits and compare signed (−1 there).
    const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(low, sign), _mm256_xor_si256(x0, sign));
    __m256i x1 = _mm256_sub_epi32(high, carry);
    __m256i x2 = c2, x3 = c3;
    uint32_t k0 = static_cast<uint32_t>(dropout.seed), k1 = static_cast<uint32_t>(dropout.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m256i hi0, lo0, hi1, lo1;
      mul_hi_lo_8(x0, m0, hi0, lo0);
      mul_hi_lo_8(x2, m1, hi1, lo1);
      const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, x1), _mm256_set1_epi32(static_cast<int>(k0)));
      const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, x3), _mm256_set1_epi32(static_cast<int>(k1)));
      x1 = lo1;
      x3 = lo0;
      x0 = n0;
      x2 = n2;
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    const __m256i bits = _mm256_or_si256(_mm256_or_si256(kept_bit_8(x0, below, 1), kept_bit_8(x1, below, 2)),
                                         _mm256_or_si256(kept_bit_8(x2, below, 4), kept_bit_8(x3, below, 8)));
    alignas(32) int32_t out[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), bits);
    const int64_t lanes = std::min<int64_t>(8, n - base);
    for (int64_t l = 0; l < lanes; ++l) flags[base + l] = static_cast<uint8_t>(out[l]);
  }
}

#endif  // ROFORMER_X86_DRAW

using DrawFn = void (*)(const Dropout&, uint64_t, int64_t, uint8_t*);

struct DrawChoice {
  DrawFn draw;
  const char* isa;
};

// The best the CPU has, or the lesser one ROFORMER_CPU_DRAW names (chosen once, at first use).
DrawChoice choose_draw() {
  const char* env = std::getenv("ROFORMER_CPU_DRAW");
  const std::string wanted = env ? env : "";
#ifdef ROFORMER_X86_DRAW
  __builtin_cpu_init();
  if (wanted != "avx2" && wanted != "portable" && __builtin_cpu_supports("avx512f")) return {draw_avx512, "avx512"};
  if (wanted != "portable" && __builtin_cpu_supports("avx2")) return {draw_avx2, "avx2"};
#endif
  return {draw_portable, "portable"};
}

const DrawChoice& draw_choice() {
  static const DrawChoice choice = choose_draw();
  return choice;
}

}  // namespace

void draw_keep_flags(const Dropout& dropout, uint64_t first, int64_t n, uint8_t* flags) {
  draw_choice().draw(dropout, first, n, flags);
}

const char* keep_flags_isa() { return draw_choice().isa; }

}  // namespace roformer::kernels
