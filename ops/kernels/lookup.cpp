#include "ops/kernels/lookup.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace ag::kernels {

void lookup_bytes(const std::uint8_t* in, std::int64_t n, const std::array<float, 256>& table,
                  float* out) {
  std::int64_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  for (; i < n; i += 16) {
    // The last piece masked: MNIST's rows are 28 bytes, or fewer when shifted.
    const auto lanes =
        static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << static_cast<unsigned>(n - i)) - 1);
    const __m512i index = _mm512_maskz_cvtepu8_epi32(lanes, _mm_maskz_loadu_epi8(lanes, in + i));
    _mm512_mask_storeu_ps(
        out + i, lanes,
        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, index, table.data(), 4));
  }
#elif defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    const __m256i index =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in + i)));
    _mm256_storeu_ps(out + i, _mm256_i32gather_ps(table.data(), index, 4));
  }
#endif
  for (; i < n; ++i) out[i] = table[in[i]];
}

}  // namespace ag::kernels
