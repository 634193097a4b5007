// The AVX-512 kernels of conv2d_scaled_tanh_subsampling2d: conv_subsampling_vectorized.hpp with
// 16-float registers (32 of them, mask registers for the partial vectors at the ends of rows).
#include "ops/fusion/conv_subsampling.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define AG_HAVE_AVX512 1
#include "ops/fusion/conv_subsampling_vectorized.hpp"
#include "ops/fusion/conv_subsampling_lanes.hpp"
// GCC 12 reports the deliberately undefined pass-through operand inside several intrinsics
// (_mm512_undefined_*) as "may be used uninitialized", or "is used uninitialized" where it can
// see it is (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#endif

namespace ag::kernels {

#ifdef AG_HAVE_AVX512

namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static constexpr Isa kIsa = Isa::Avx512;
  // Forward by width: 2 rows x 2 vectors x 6 channels = 24 sums, 6 weights and an input.
  static constexpr int kWidthRows = 2, kWidthVectors = 2, kWidthChannels = 6;
  // grad_w by width: 3 channels x 5 taps of a kernel row = 15 sums, 3 dz vectors and an input
  // vector, each input loaded once for the 3 channels.
  static constexpr int kWidthGradChannels = 3;
  // Forward by channel: 10 positions of a row (LeNet's 10-column C3 in one block).
  static constexpr int kChannelPositions = 10;
  // grad_w by channel: up to 25 tap sums (a 5 x 5 kernel whole), so that each position's dz is
  // loaded once for all the taps.
  static constexpr int kChannelGradSums = 25;

  // Lanes: a row of 10 positions (LeNet's C3) and its 14 inputs in registers; grad_w 4 output
  // channels x 5 taps = 20 sums; grad_x a row of 14 positions.
  static constexpr int kLanePositions = 10, kLaneGradOutputs = 4, kLaneGradXPositions = 14;

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  static V load_first(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store_first(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V pair_sums(V a, V b) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return add(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
  }
  static V spread_low(V v) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), v);
  }
  static V spread_high(V v) {
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15), v);
  }
  // Hides that p[k] at one tap is p[k + 1] at the one before: GCC would otherwise keep inputs in
  // registers and broadcast them with shuffles, where a multiply-add with a broadcast memory
  // operand costs nothing extra.
  static void hide(const float*& p) { asm("" : "+r"(p)); }
  static void hold(V& v) { asm("" : "+v"(v)); }

  // out[k] = the sum of v[k]'s lanes, k < X <= 16: a tree of unpacks and shuffles that ends with
  // the 16 sums in order in one register.
  template <int X>
  static void store_sums(const V (&v)[X], float* out) {
    V r[16], t[8], u[4], w[2];
#pragma GCC unroll 16
    for (int k = 0; k < 16; ++k) r[k] = k < X ? v[k] : zero();
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)  // per 128-bit lane: [a0 + a2, b0 + b2, a1 + a3, b1 + b3]
      t[i] = add(_mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]),
                 _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i)  // per 128-bit lane: the lane's sums of 4 registers
      u[i] = add(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44),
                 _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0xEE));
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i)  // 128-bit lanes 0 + 1 and 2 + 3 of two groups of 4
      w[i] = add(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                 _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xDD));
    store_first(out, add(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xDD)),
                X);
  }
};

}  // namespace

#endif  // AG_HAVE_AVX512

std::shared_ptr<DirectConvolution<float>> direct_convolution_avx512(const ConvGeometry& g,
                                                                    const float* w) {
#ifdef AG_HAVE_AVX512
  return direct::make<Avx512>(g, w);
#else
  (void)g, (void)w;
  return nullptr;
#endif
}

std::shared_ptr<LaneConvolution> lane_convolution_avx512(const ConvGeometry& g, const float* w,
                                                         const ConnectionTable& connections) {
#ifdef AG_HAVE_AVX512
  return lanes::make<Avx512>(g, w, connections);
#else
  (void)g, (void)w, (void)connections;
  return nullptr;
#endif
}

bool subsample_2x2_avx512(std::int64_t channels, std::int64_t height, std::int64_t width,
                          const float* a, const float* weight, const float* bias, float* y) {
#ifdef AG_HAVE_AVX512
  direct::subsample_2x2<Avx512>(channels, height, width, a, weight, bias, y);
  return true;
#else
  (void)channels, (void)height, (void)width, (void)a, (void)weight, (void)bias, (void)y;
  return false;
#endif
}

bool subsample_2x2_adjoint_avx512(std::int64_t channels, std::int64_t height, std::int64_t width,
                                  const float* t, const float* a, const float* scale,
                                  SlopeOfScaledTanh slope, bool squared, float* dz, float* grad_b,
                                  float* grad_weight, float* grad_bias) {
#ifdef AG_HAVE_AVX512
  direct::subsample_2x2_adjoint<Avx512>(channels, height, width, t, a, scale, slope, squared, dz,
                                      grad_b, grad_weight, grad_bias);
  return true;
#else
  (void)channels, (void)height, (void)width, (void)t, (void)a, (void)scale, (void)slope;
  (void)squared, (void)dz, (void)grad_b, (void)grad_weight, (void)grad_bias;
  return false;
#endif
}

}  // namespace ag::kernels
