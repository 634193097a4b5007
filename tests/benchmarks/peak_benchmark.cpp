// The core's multiply-add peak and the rates of the convolution kernels' inner-loop patterns, on
// data in L1: the yardstick behind "percent of peak" in docs/performance.md.
//   ./build/tests/benchmarks/peak_benchmark
// items_per_second counts 8-float (AVX2) or 16-float (AVX-512) multiply-adds; times lanes for
// multiply-adds of floats. Each loop keeps its sums in registers (checked in the disassembly: no
// stack traffic inside the loops).
#include <benchmark/benchmark.h>

#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace {

alignas(64) float input[1024];
alignas(64) float weights[1024];

// Sums, all in registers: N independent multiply-add chains.
template <int N>
struct Sums {
  __m256 v[N];
  Sums() {
#pragma GCC unroll 16
    for (int k = 0; k < N; ++k) v[k] = _mm256_set1_ps(static_cast<float>(k));
  }
  float total() const {
    __m256 s = v[0];
#pragma GCC unroll 16
    for (int k = 1; k < N; ++k) s = _mm256_add_ps(s, v[k]);
    return _mm256_cvtss_f32(s);
  }
};

// 12 chains of register operands: the peak (Zen 2 and Intel since Haswell start two a cycle).
void BM_Peak_RegistersOnly(benchmark::State& state) {
  Sums<12> sum;
  __m256 a = _mm256_set1_ps(1e-7f), b = _mm256_set1_ps(1e-7f);
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
#pragma GCC unroll 16
      for (int k = 0; k < 12; ++k) sum.v[k] = _mm256_fmadd_ps(a, b, sum.v[k]);
      asm volatile("" : "+x"(a));  // keeps the loop from being folded
    }
  }
  benchmark::DoNotOptimize(sum.total());
  state.SetItemsProcessed(state.iterations() * 1000 * 12);
}

// By channel, 8 channels a vector (conv_pool_avx2.cpp's 2 x 6 block): one weight vector and 12
// broadcast inputs per 12 multiply-adds.
void BM_Pattern_OneWeightTwelveBroadcasts(benchmark::State& state) {
  Sums<12> sum;
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
      const float* x = input + (it & 63);
      const __m256 w = _mm256_load_ps(weights + 8 * (it & 31));
#pragma GCC unroll 16
      for (int k = 0; k < 12; ++k)
        sum.v[k] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k), w, sum.v[k]);
    }
  }
  benchmark::DoNotOptimize(sum.total());
  state.SetItemsProcessed(state.iterations() * 1000 * 12);
}

// By channel, 16 channels in two vectors (the 16-channel row of 5 positions): two weight vectors
// and 5 broadcasts per 10 multiply-adds, each broadcast feeding both.
void BM_Pattern_TwoWeightsFiveBroadcasts(benchmark::State& state) {
  Sums<10> sum;
  for (auto _ : state) {
    for (int it = 0; it < 1000; ++it) {
      const float* x = input + (it & 63);
      const float* w = weights + 16 * (it & 31);
      const __m256 w0 = _mm256_load_ps(w), w1 = _mm256_load_ps(w + 8);
#pragma GCC unroll 16
      for (int k = 0; k < 5; ++k) {
        const __m256 b = _mm256_broadcast_ss(x + k);
        sum.v[2 * k] = _mm256_fmadd_ps(b, w0, sum.v[2 * k]);
        sum.v[2 * k + 1] = _mm256_fmadd_ps(b, w1, sum.v[2 * k + 1]);
      }
    }
  }
  benchmark::DoNotOptimize(sum.total());
  state.SetItemsProcessed(state.iterations() * 1000 * 10);
}

}  // namespace

BENCHMARK(BM_Peak_RegistersOnly);
BENCHMARK(BM_Pattern_OneWeightTwelveBroadcasts);
BENCHMARK(BM_Pattern_TwoWeightsFiveBroadcasts);

#endif  // AVX2 and FMA

BENCHMARK_MAIN();
