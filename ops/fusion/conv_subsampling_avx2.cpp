// The AVX2 kernels of conv2d_scaled_tanh_subsampling2d: conv_subsampling_vectorized.hpp with 8-float
// registers (16 of them; masked loads and stores by vmaskmovps for the partial vectors at the ends
// of rows), for CPUs without AVX-512 (Zen 2, Haswell to Skylake client).
#include "ops/fusion/conv_subsampling.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define AG_HAVE_AVX2 1
#include "ops/fusion/conv_subsampling_vectorized.hpp"
#include "ops/fusion/conv_subsampling_lanes.hpp"
#endif

namespace ag::kernels {

#ifdef AG_HAVE_AVX2

namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static constexpr Isa kIsa = Isa::Avx2;
  // Forward by width: 2 rows x 2 vectors x 3 channels = 12 sums, 3 weights and an input (a
  // multiply-add's 5-cycle latency at 2 per cycle wants 10 sums in flight).
  static constexpr int kWidthRows = 2, kWidthVectors = 2, kWidthChannels = 3;
  // grad_w by width: 2 channels x 5 taps of a kernel row = 10 sums, 2 dz vectors and an input.
  static constexpr int kWidthGradChannels = 2;
  // Forward by channel: 5 positions x 2 vectors of 8 channels, each broadcast feeding both.
  static constexpr int kChannelPositions = 5;
  // grad_w by channel: one kernel row of 5 taps x 2 vectors.
  static constexpr int kChannelGradSums = 10;

  // Lanes: as AVX-512, a row of 10 positions (its 14 inputs spill: 24 registers of 16) and grad_x
  // rows of 14, so that enough sums are in flight for a multiply-add's latency at 2 per cycle (4
  // positions ran at 17,300 images/s at batch 100 on Zen 4, 10 at 25,000-29,000); grad_w 2 output
  // channels x 5 taps.
  static constexpr int kLanePositions = 10, kLaneGradOutputs = 2, kLaneGradXPositions = 14;

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static __m256i first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_first(const float* p, int n) { return _mm256_maskload_ps(p, first(n)); }
  static void store_first(float* p, V v, int n) { _mm256_maskstore_ps(p, first(n), v); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static float sum(V v) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
  }
  static void hide(const float*&) {}
  static void hold(V& v) { asm("" : "+x"(v)); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  // hadd gives a0+a1 a2+a3 b0+b1 b2+b3 | a4+a5 a6+a7 b4+b5 b6+b7; the 64-bit permute puts a's first.
  static V pair_sums(V a, V b) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_hadd_ps(a, b)), 0xD8));
  }
  static V spread_low(V v) {
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
  }
  static V spread_high(V v) {
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
  }

  // out[k] = the sum of v[k]'s lanes, k < X <= 8: horizontal adds, then the two 128-bit halves.
  template <int X>
  static void store_sums(const V (&v)[X], float* out) {
    V r[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) r[k] = k < X ? v[k] : zero();
    const V g0 = _mm256_hadd_ps(_mm256_hadd_ps(r[0], r[1]), _mm256_hadd_ps(r[2], r[3]));
    const V g1 = _mm256_hadd_ps(_mm256_hadd_ps(r[4], r[5]), _mm256_hadd_ps(r[6], r[7]));
    store_first(out,
                add(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31)),
                X);
  }
};

}  // namespace

#endif  // AG_HAVE_AVX2

std::shared_ptr<DirectConvolution<float>> direct_convolution_avx2(const ConvGeometry& g,
                                                                  const float* w) {
#ifdef AG_HAVE_AVX2
  return direct::make<Avx2>(g, w);
#else
  (void)g, (void)w;
  return nullptr;
#endif
}

std::shared_ptr<LaneConvolution> lane_convolution_avx2(const ConvGeometry& g, const float* w,
                                                         const ConnectionTable& connections) {
#ifdef AG_HAVE_AVX2
  return lanes::make<Avx2>(g, w, connections);
#else
  (void)g, (void)w, (void)connections;
  return nullptr;
#endif
}

bool subsample_2x2_avx2(std::int64_t channels, std::int64_t height, std::int64_t width,
                        const float* a, const float* weight, const float* bias, float* y) {
#ifdef AG_HAVE_AVX2
  direct::subsample_2x2<Avx2>(channels, height, width, a, weight, bias, y);
  return true;
#else
  (void)channels, (void)height, (void)width, (void)a, (void)weight, (void)bias, (void)y;
  return false;
#endif
}

bool subsample_2x2_adjoint_avx2(std::int64_t channels, std::int64_t height, std::int64_t width,
                                  const float* t, const float* a, const float* scale,
                                  SlopeOfScaledTanh slope, bool squared, float* dz, float* grad_b,
                                  float* grad_weight, float* grad_bias) {
#ifdef AG_HAVE_AVX2
  direct::subsample_2x2_adjoint<Avx2>(channels, height, width, t, a, scale, slope, squared, dz,
                                      grad_b, grad_weight, grad_bias);
  return true;
#else
  (void)channels, (void)height, (void)width, (void)t, (void)a, (void)scale, (void)slope;
  (void)squared, (void)dz, (void)grad_b, (void)grad_weight, (void)grad_bias;
  return false;
#endif
}

}  // namespace ag::kernels
