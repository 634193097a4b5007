// AVX2 kernels of the fused convolution + relu + 2x2 max-pool, float32, stride 1: the algorithms
// of conv_pool_avx512.cpp for CPUs with 8-float registers, 16 of them, and no mask registers
// (Zen 2, Haswell to Skylake client), which would otherwise run the plain loops of conv_pool.hpp,
// many times slower.
//
// Forward: direct convolution. With 16 registers a block keeps 10 to 12 accumulators, enough to
// hide the multiply-add's latency (8 are too few to keep the multiply-add units busy):
//   - by channel: a ymm holds 8 output channels of one position (zero weights fill the lanes past
//     the last channel). 16 channels at a time (LeNet's conv2) go one conv row of 5 positions x
//     2 vectors at a time, each broadcast input feeding both vectors, and are pooled from a
//     two-row buffer; 8 or fewer (LeNet's conv1) go 2 rows x 6 columns, pooled in registers;
//   - by width, for 4 channels or fewer: a ymm holds 8 neighbouring outputs of one channel; a
//     block is 2 rows x 16 columns (2 vectors) x 3 channels, pooled in registers.
// Backward: vectorized::backward (conv_pool_common.hpp), its masked steps done with blends and
// a permutation table.
#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include "autograd/allocator.hpp"
#include "ops/fusion/conv_pool.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define AG_HAVE_AVX2 1
#include "ops/fusion/conv_pool_common.hpp"
#endif

namespace ag::kernels {

#ifdef AG_HAVE_AVX2

namespace {

using vectorized::LiveWinners;
using vectorized::PaddedImage;
using vectorized::with_constant;

// The pooled value and winner slot of 8 windows given their four elements, in window order
// (top-left, top-right, bottom-left, bottom-right): the first maximum wins, as in max_pool2d. The
// bias is added after the maximum (the same for all four); relu keeps only positive maxima.
// Without `winners` (a forward that saves nothing) the slots are left zero and the value is taken
// by maxima: max(a, b) is "a > b ? a : b", as the comparisons, so the values agree bit for bit,
// NaN and signed zeros included.
struct Pooled {
  __m256 value;
  __m256i slot;
};
[[gnu::always_inline]] inline Pooled pool_window(__m256 z0, __m256 z1, __m256 z2, __m256 z3,
                                                 __m256 bias, bool relu, bool winners) {
  if (!winners) {
    const __m256 best =
        _mm256_add_ps(_mm256_max_ps(z3, _mm256_max_ps(z2, _mm256_max_ps(z1, z0))), bias);
    return {relu ? _mm256_max_ps(best, _mm256_setzero_ps()) : best, _mm256_setzero_si256()};
  }
  __m256 best = z0;
  __m256i slot = _mm256_setzero_si256();
  const auto take = [&](__m256 z, int index) {
    const __m256 greater = _mm256_cmp_ps(z, best, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, z, greater);
    slot = _mm256_blendv_epi8(slot, _mm256_set1_epi32(index), _mm256_castps_si256(greater));
  };
  take(z1, 1), take(z2, 2), take(z3, 3);
  best = _mm256_add_ps(best, bias);
  if (relu) {
    const __m256 alive = _mm256_cmp_ps(best, _mm256_setzero_ps(), _CMP_GT_OQ);
    best = _mm256_and_ps(best, alive);
    slot = _mm256_blendv_epi8(_mm256_set1_epi32(kNoWinner), slot, _mm256_castps_si256(alive));
  }
  return {best, slot};
}

// Lanes (0, 2, .., 14) and (1, 3, .., 15) of the 16 lanes of a and b: the left and right columns
// of each 2x2 window over 16 conv columns.
[[gnu::always_inline]] inline __m256 even_lanes(__m256 a, __m256 b) {
  const __m256 pairs = _mm256_shuffle_ps(a, b, 0x88);  // a0 a2 b0 b2 | a4 a6 b4 b6
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), 0xD8));
}
[[gnu::always_inline]] inline __m256 odd_lanes(__m256 a, __m256 b) {
  const __m256 pairs = _mm256_shuffle_ps(a, b, 0xDD);
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), 0xD8));
}

// Stores the first `count` (<= 8) lanes of r at y[0 ..) and their slots as bytes at winners[0 ..)
// (if not null), touching nothing past them.
[[gnu::always_inline]] inline void store_pooled(const Pooled& r, std::int64_t count, float* y,
                                                std::uint8_t* winners) {
  const __m128i slots16 =
      _mm_packus_epi32(_mm256_castsi256_si128(r.slot), _mm256_extracti128_si256(r.slot, 1));
  const __m128i slots8 = _mm_packus_epi16(slots16, slots16);  // slots are 0 .. 3 or 0xFF
  if (count == 8) {
    _mm256_storeu_ps(y, r.value);
    if (winners) _mm_storel_epi64(reinterpret_cast<__m128i*>(winners), slots8);
    return;
  }
  const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  _mm256_maskstore_ps(y, lanes, r.value);
  if (winners) {
    // Byte by byte from the low 8 bytes: a memcpy of a run-time count is a library call.
    std::uint64_t bytes = static_cast<std::uint64_t>(_mm_cvtsi128_si64(slots8));
    for (std::int64_t k = 0; k < count; ++k, bytes >>= 8)
      winners[k] = static_cast<std::uint8_t>(bytes);
  }
}

// Stores the first `count` (<= 8) lanes of r at y[0], y[stride], .. and their slots at
// winners[0], winners[stride], .. (if not null).
[[gnu::always_inline]] inline void scatter_pooled(const Pooled& r, std::int64_t count,
                                                  std::int64_t stride, float* y,
                                                  std::uint8_t* winners) {
  alignas(32) float values[8];
  alignas(32) std::int32_t slots[8];
  _mm256_store_ps(values, r.value);
  _mm256_store_si256(reinterpret_cast<__m256i*>(slots), r.slot);
  for (std::int64_t k = 0; k < count; ++k) y[k * stride] = values[k];
  if (winners)
    for (std::int64_t k = 0; k < count; ++k)
      winners[k * stride] = static_cast<std::uint8_t>(slots[k]);
}

// ---- Forward, by width: CB channels, conv columns [16 b, 16 b + 16) of every row ----

template <int CB, int KW>
void forward_by_width_block(const ConvGeometry& g, const PoolGeometry& pool, const PaddedImage& xp,
                            const float* w, const float* b, std::int64_t o0, std::int64_t block,
                            float* y_n, std::uint8_t* winners_n) {
  const std::int64_t taps = g.kernel_h * g.kernel_w, pooled = pool.out_h * pool.out_w;
  const std::int64_t j0 = 8 * block, columns = std::min<std::int64_t>(8, pool.out_w - j0);
  const float* image = xp.data.get() + 16 * block;
  for (std::int64_t i = 0; i < pool.out_h; ++i) {
    __m256 top[2][CB], bottom[2][CB];  // conv rows 2i and 2i + 1
#pragma GCC unroll 8
    for (int o = 0; o < CB; ++o)
      top[0][o] = top[1][o] = bottom[0][o] = bottom[1][o] = _mm256_setzero_ps();
    for (std::int64_t c = 0; c < g.in_channels; ++c)
      for (std::int64_t p = 0; p < g.kernel_h; ++p) {
        const float* row_top = image + c * xp.plane + (2 * i + p) * xp.padded_w;
        const float* row_bottom = row_top + xp.padded_w;
        const float* w_row = w + ((o0 * g.in_channels + c) * g.kernel_h + p) * g.kernel_w;
#pragma GCC unroll 8
        for (int q = 0; q < KW; ++q) {
          // CB weights and one input in registers beside the 4 CB sums: each input is loaded once.
          __m256 weight[CB];
#pragma GCC unroll 8
          for (int o = 0; o < CB; ++o)
            weight[o] = _mm256_broadcast_ss(w_row + o * g.in_channels * taps + q);
#pragma GCC unroll 2
          for (int v = 0; v < 2; ++v) {
            const __m256 x_top = _mm256_loadu_ps(row_top + 8 * v + q);
#pragma GCC unroll 8
            for (int o = 0; o < CB; ++o) top[v][o] = _mm256_fmadd_ps(weight[o], x_top, top[v][o]);
            const __m256 x_bottom = _mm256_loadu_ps(row_bottom + 8 * v + q);
#pragma GCC unroll 8
            for (int o = 0; o < CB; ++o)
              bottom[v][o] = _mm256_fmadd_ps(weight[o], x_bottom, bottom[v][o]);
          }
        }
      }
#pragma GCC unroll 8
    for (int o = 0; o < CB; ++o) {
      const Pooled r =
          pool_window(even_lanes(top[0][o], top[1][o]), odd_lanes(top[0][o], top[1][o]),
                      even_lanes(bottom[0][o], bottom[1][o]), odd_lanes(bottom[0][o], bottom[1][o]),
                      _mm256_set1_ps(b ? b[o0 + o] : 0.0f), pool.relu, winners_n != nullptr);
      const std::int64_t out = (o0 + o) * pooled + i * pool.out_w + j0;
      store_pooled(r, columns, y_n + out, winners_n ? winners_n + out : nullptr);
    }
  }
}

void forward_by_width(const ConvGeometry& g, const PoolGeometry& pool, const PaddedImage& xp,
                      const float* w, const float* b, float* y_n, std::uint8_t* winners_n) {
  // 2 rows x 2 vectors x 3 channels = 12 accumulators, 3 weights and an input: all 16 registers
  // (12 accumulators hide the multiply-add latency; 8, with 2 channels, do not).
  constexpr std::int64_t kChannels = 3;
  for (std::int64_t o0 = 0; o0 < g.out_channels; o0 += kChannels)
    for (std::int64_t block = 0; 8 * block < pool.out_w; ++block)
      with_constant<kChannels>(std::min(kChannels, g.out_channels - o0), [&](auto channels) {
        with_constant<8>(g.kernel_w, [&](auto kernel_w) {
          forward_by_width_block<channels, kernel_w>(g, pool, xp, w, b, o0, block, y_n, winners_n);
        });
      });
}

// ---- Forward, by channel: 8 channels per ymm, PB pooled columns (2 PB conv columns) ----

// w_t:[ceil(Cout / 8)][Cin][KH][KW][8] (vectorized::channels_innermost), b padded to whole vectors.
template <int PB>
void forward_by_channel_block(const ConvGeometry& g, const PoolGeometry& pool, const float* image,
                              std::int64_t plane, std::int64_t row_stride, const float* w_t,
                              const float* b, std::int64_t o0, std::int64_t i, std::int64_t j0,
                              float* y_n, std::uint8_t* winners_n) {
  constexpr int C = 2 * PB;  // conv columns
  __m256 top[C], bottom[C];
#pragma GCC unroll 8
  for (int k = 0; k < C; ++k) top[k] = bottom[k] = _mm256_setzero_ps();
  const float* weights = w_t + o0 * g.patch();
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p) {
      const float* row_top = image + c * plane + (2 * i + p) * row_stride + 2 * j0;
      const float* row_bottom = row_top + row_stride;
      for (std::int64_t q = 0; q < g.kernel_w; ++q, weights += 8) {
        const __m256 weight = _mm256_loadu_ps(weights);
#pragma GCC unroll 8
        for (int k = 0; k < C; ++k) {
          top[k] = _mm256_fmadd_ps(_mm256_broadcast_ss(row_top + q + k), weight, top[k]);
          bottom[k] = _mm256_fmadd_ps(_mm256_broadcast_ss(row_bottom + q + k), weight, bottom[k]);
        }
      }
    }
  const std::int64_t pooled = pool.out_h * pool.out_w;
  const __m256 bias = _mm256_loadu_ps(b + o0);
#pragma GCC unroll 8
  for (int k = 0; k < PB; ++k) {
    const Pooled r =
        pool_window(top[2 * k], top[2 * k + 1], bottom[2 * k], bottom[2 * k + 1], bias, pool.relu,
                    winners_n != nullptr);
    const std::int64_t out = o0 * pooled + i * pool.out_w + j0 + k;  // channel o0's element
    scatter_pooled(r, std::min<std::int64_t>(8, g.out_channels - o0), pooled, y_n + out,
                   winners_n ? winners_n + out : nullptr);
  }
}

// The sums of conv row positions [x, x + P) for 16 channels, two vectors of 8 (the weight group at
// w_pair and the next), into out[2 k] and out[2 k + 1]; `in` points at the input under position
// x. Each broadcast input feeds both vectors: 2 weight loads and P broadcasts per 2 P
// multiply-adds.
template <int P>
void conv_row_16_channels(const ConvGeometry& g, const float* in, std::int64_t plane,
                          std::int64_t row_stride, const float* w_pair, __m256* out) {
  __m256 sum[P][2];
#pragma GCC unroll 8
  for (int k = 0; k < P; ++k) sum[k][0] = sum[k][1] = _mm256_setzero_ps();
  const std::int64_t group = g.patch() * 8;  // floats from one group of 8 channels to the next
  const float* weights = w_pair;
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p) {
      const float* row = in + c * plane + p * row_stride;
      for (std::int64_t q = 0; q < g.kernel_w; ++q, weights += 8) {
        const __m256 w0 = _mm256_loadu_ps(weights), w1 = _mm256_loadu_ps(weights + group);
#pragma GCC unroll 8
        for (int k = 0; k < P; ++k) {
          const __m256 x = _mm256_broadcast_ss(row + q + k);
          sum[k][0] = _mm256_fmadd_ps(x, w0, sum[k][0]);
          sum[k][1] = _mm256_fmadd_ps(x, w1, sum[k][1]);
        }
      }
    }
#pragma GCC unroll 8
  for (int k = 0; k < P; ++k) out[2 * k] = sum[k][0], out[2 * k + 1] = sum[k][1];
}

// rows: room for 2 x 2 out_w x 2 vectors, when there are more than 8 channels.
void forward_by_channel(const ConvGeometry& g, const PoolGeometry& pool, const float* image,
                        std::int64_t plane, std::int64_t row_stride, const float* w_t,
                        const float* b, __m256* rows, float* y_n, std::uint8_t* winners_n) {
  const std::int64_t pooled = pool.out_h * pool.out_w;
  std::int64_t o0 = 0;
  // Pairs of 8-channel groups. A conv row of 5 positions keeps 10 sums, and sharing each broadcast
  // between two weight vectors halves the loads per multiply-add: 2 weights and 5 broadcasts per
  // 10 multiply-adds, where a 2 x 6 block of one group needs a weight and 12 broadcasts per 12,
  // so this pattern comes closer to the core's multiply-add peak (peak_benchmark).
  // The two rows' sums wait in `rows` (2 x conv_w positions x 2 vectors) to be pooled.
  constexpr std::int64_t kPositions = 5;
  const std::int64_t conv_w = 2 * pool.out_w;
  for (; o0 + 8 < g.out_channels; o0 += 16)
    for (std::int64_t i = 0; i < pool.out_h; ++i) {
      for (std::int64_t r = 0; r < 2; ++r)
        for (std::int64_t x = 0; x < conv_w; x += kPositions)
          with_constant<kPositions>(std::min(kPositions, conv_w - x), [&](auto positions) {
            conv_row_16_channels<positions>(g, image + (2 * i + r) * row_stride + x, plane,
                                            row_stride, w_t + o0 * g.patch(),
                                            rows + (r * conv_w + x) * 2);
          });
      for (std::int64_t h = 0; h < 2; ++h) {
        const __m256 bias = _mm256_loadu_ps(b + o0 + 8 * h);
        const std::int64_t channels = std::min<std::int64_t>(8, g.out_channels - o0 - 8 * h);
        for (std::int64_t j = 0; j < pool.out_w; ++j) {
          const __m256* top = rows + 2 * (2 * j) + h;  // window j's top-left sum
          const __m256* bottom = top + 2 * conv_w;
          const Pooled r = pool_window(top[0], top[2], bottom[0], bottom[2], bias, pool.relu,
                                       winners_n != nullptr);
          const std::int64_t out = (o0 + 8 * h) * pooled + i * pool.out_w + j;
          scatter_pooled(r, channels, pooled, y_n + out, winners_n ? winners_n + out : nullptr);
        }
      }
    }
  // A last group of 8 or fewer: 2 rows x 6 columns = 12 accumulators, a weight and a broadcast
  // input.
  constexpr std::int64_t kPooledColumns = 3;
  for (; o0 < g.out_channels; o0 += 8)
    for (std::int64_t i = 0; i < pool.out_h; ++i)
      for (std::int64_t j0 = 0; j0 < pool.out_w; j0 += kPooledColumns)
        with_constant<kPooledColumns>(std::min(kPooledColumns, pool.out_w - j0), [&](auto columns) {
          forward_by_channel_block<columns>(g, pool, image, plane, row_stride, w_t, b, o0, i, j0,
                                            y_n, winners_n);
        });
}

// ---- Backward: the steps of vectorized::backward ----

// For each 8-bit mask, the indices of its set bits in order, one per byte (then zeros): the
// permutation that moves a vector's selected lanes to the front.
constexpr auto kLeftPack = [] {
  std::array<std::uint64_t, 256> table{};
  for (unsigned mask = 0; mask < 256; ++mask)
    for (unsigned bit = 0, count = 0; bit < 8; ++bit)
      if ((mask >> bit) & 1) table[mask] |= std::uint64_t{bit} << (8 * count++);
  return table;
}();

class Avx2Backward {
 public:
  // grad_w_rows keeps 2 sets of 6 row sums (12, for the 5-cycle multiply-add latency) and 2
  // scales in the 16 registers. Chunks of 8 rows in one set are latency-bound at 8 sums, chunks
  // of 5 leave the latency partly exposed, and chunks of 10 spill registers.
  static constexpr std::int64_t kRowChunk = 6;
  // grad_x_rows: 12 sums, a scale and a row of weights, with the window's two slot vectors.
  static constexpr std::int64_t kWindowRowChunk = 12;

  Avx2Backward(const ConvGeometry& g, const vectorized::Interleaved& layout,
               const std::int32_t (&slot_offsets)[4])
      : g_(g), layout_(layout) {
    std::copy(std::begin(slot_offsets), std::end(slot_offsets), slot_offsets_);
  }

  // x_n:[Cin, H, W] into the interleaved padded layout. The border was zeroed once and is never
  // written, so only the image's rows are copied.
  void fill_interleaved(const float* x_n, float* out) const {
    for (std::int64_t h = 0; h < g_.height; ++h)
      for (std::int64_t c = 0; c < g_.in_channels; ++c)
        std::memcpy(out + ((h + g_.padding) * g_.in_channels + c) * layout_.row_floats + g_.padding,
                    x_n + (c * g_.height + h) * g_.width, static_cast<std::size_t>(g_.width) * 4);
  }

  // dx_n:[Cin, H, W] += the interior of the interleaved padded image `padded`, which is left zero.
  void add_interleaved(float* padded, float* dx_n) const {
    for (std::int64_t y = 0; y < layout_.padded_h; ++y)
      for (std::int64_t c = 0; c < g_.in_channels; ++c) {
        float* row = padded + (y * g_.in_channels + c) * layout_.row_floats;
        const std::int64_t image_y = y - g_.padding;
        if (image_y >= 0 && image_y < g_.height) {
          float* out = dx_n + (c * g_.height + image_y) * g_.width;
          for (std::int64_t j = 0; j < g_.width; ++j) out[j] += row[g_.padding + j];
        }
        // Rows are 16, 32 or 64 floats: vector stores, where a library memset per row would be a
        // call for a few stores.
        for (std::int64_t j = 0; j < layout_.row_floats; j += 8)
          _mm256_storeu_ps(row + j, _mm256_setzero_ps());
      }
  }

  // The winners of one channel of one image that carry gradient, compacted without branches (which
  // windows relu cut off is data, where a branch would mispredict): 8 windows at a time, the live
  // lanes moved to the front by a permutation looked up from their mask; the last < 8 windows one
  // by one, each written and the count advanced only past the live ones.
  std::int64_t compact_winners(std::int64_t windows, const std::uint8_t* winners_o,
                               const float* dy_o, const std::int32_t* window_offset,
                               LiveWinners out, float* grad_b) const {
    std::int64_t live_count = 0, k = 0;
    const __m256i slot_offset = _mm256_setr_epi32(slot_offsets_[0], slot_offsets_[1],
                                                  slot_offsets_[2], slot_offsets_[3], 0, 0, 0, 0);
    __m256 grad_sums = _mm256_setzero_ps();
    for (; k + 8 <= windows; k += 8) {
      const __m256i slot =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(winners_o + k)));
      const __m256 grad = _mm256_loadu_ps(dy_o + k);
      const __m256 live = _mm256_andnot_ps(
          _mm256_castsi256_ps(_mm256_cmpeq_epi32(slot, _mm256_set1_epi32(kNoWinner))),
          _mm256_cmp_ps(grad, _mm256_setzero_ps(), _CMP_NEQ_UQ));
      const __m256i patch = _mm256_add_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(window_offset + k)),
          _mm256_permutevar8x32_epi32(slot_offset, _mm256_and_si256(slot, _mm256_set1_epi32(3))));
      const unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(live));
      const __m256i to_front = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(kLeftPack[mask]));
      // All 8 lanes stored: the ones past the live lanes land in the buffers' slack.
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.patch + live_count),
                          _mm256_permutevar8x32_epi32(patch, to_front));
      _mm256_storeu_ps(out.grad + live_count, _mm256_permutevar8x32_ps(grad, to_front));
      grad_sums = _mm256_add_ps(grad_sums, _mm256_and_ps(grad, live));
      live_count += std::popcount(mask);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, grad_sums);
    float grad_sum = 0;
    for (const float lane : lanes) grad_sum += lane;
    for (; k < windows; ++k) {
      const std::uint8_t slot = winners_o[k];
      const float grad = dy_o[k];
      const bool live = slot != kNoWinner && grad != 0.0f;
      out.patch[live_count] = window_offset[k] + slot_offsets_[slot & 3];
      out.grad[live_count] = grad;
      grad_sum += live ? grad : 0.0f;
      live_count += live;
    }
    if (grad_b) *grad_b += grad_sum;
    return live_count;
  }

  // As Avx512Backward::grad_w_rows; Zen 2's multiply-add waits 5 cycles, so 10 or more sums
  // where the chunk allows.
  template <int S, int R>
  void grad_w_rows(std::int64_t kernel_w, const float* image, std::int64_t live_count,
                   LiveWinners live, float* sums) const {
    constexpr int kSets = R >= 3 ? 2 : 4;
    __m256 sum[kSets][R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int set = 0; set < kSets; ++set) sum[set][r] = _mm256_setzero_ps();
    std::int64_t e = 0;
    for (; e + kSets <= live_count; e += kSets)
#pragma GCC unroll 4
      for (int set = 0; set < kSets; ++set) {
        const float* patch = image + live.patch[e + set];
        const __m256 scale = _mm256_broadcast_ss(live.grad + e + set);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          sum[set][r] = _mm256_fmadd_ps(scale, _mm256_loadu_ps(patch + S * r), sum[set][r]);
      }
    for (; e < live_count; ++e) {
      const float* patch = image + live.patch[e];
      const __m256 scale = _mm256_broadcast_ss(live.grad + e);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        sum[0][r] = _mm256_fmadd_ps(scale, _mm256_loadu_ps(patch + S * r), sum[0][r]);
    }
    // Lanes past kernel_w summed what lies right of the patch: all 8 are stored, sums has room
    // (8 floats a row) and add_kernel_rows_of_8 reads only the first kernel_w.
    (void)kernel_w;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int set = 1; set < kSets; ++set) sum[0][r] = _mm256_add_ps(sum[0][r], sum[set][r]);
      _mm256_storeu_ps(sums + 8 * r, _mm256_add_ps(_mm256_loadu_ps(sums + 8 * r), sum[0][r]));
    }
  }

  // As Avx512Backward::grad_x_rows, the channels that won at a slot found with a byte compare.
  template <int S, int E>
  void grad_x_rows(std::int64_t windows, std::int64_t out_channels, const std::uint8_t* slots,
                   const float* grads, const std::int32_t* window_offset,
                   const vectorized::WindowKernelRows& kernel, std::int64_t e0,
                   float* image) const {
    const std::uint64_t channels =
        out_channels == 64 ? ~std::uint64_t(0) : (std::uint64_t(1) << out_channels) - 1;
    const float* w = kernel.row(e0);
    const std::int64_t channel_floats = kernel.channel_floats;
    const float* bases[4] = {w, w + kernel.shifted, w - kernel.below,
                             w + kernel.shifted - kernel.below};
    for (std::int64_t k = 0; k < windows; ++k) {
      // slots has 64 bytes of slack past the last window, so both loads stay inside it.
      const std::uint8_t* window_slots = slots + k * out_channels;
      const __m256i low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(window_slots));
      const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(window_slots + 32));
      __m256 sum[E];
#pragma GCC unroll 16
      for (int r = 0; r < E; ++r) sum[r] = _mm256_setzero_ps();
      for (int slot = 0; slot < 4; ++slot) {
        const __m256i wanted = _mm256_set1_epi8(static_cast<char>(slot));
        std::uint64_t won =
            (static_cast<std::uint64_t>(
                 static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(low, wanted)))) |
             static_cast<std::uint64_t>(
                 static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(high, wanted))))
                 << 32) &
            channels;
        for (; won; won &= won - 1) {
          const std::int64_t o = static_cast<std::int64_t>(_tzcnt_u64(won));
          const __m256 scale = _mm256_broadcast_ss(grads + k * out_channels + o);
          const float* w_rows = bases[slot] + o * channel_floats;
#pragma GCC unroll 16
          for (int r = 0; r < E; ++r)
            sum[r] = _mm256_fmadd_ps(scale, _mm256_loadu_ps(w_rows + 8 * r), sum[r]);
        }
      }
      float* patch = image + window_offset[k];
#pragma GCC unroll 16
      for (int r = 0; r < E; ++r)
        _mm256_storeu_ps(patch + S * r, _mm256_add_ps(_mm256_loadu_ps(patch + S * r), sum[r]));
    }
  }

 private:
  const ConvGeometry& g_;
  const vectorized::Interleaved& layout_;
  std::int32_t slot_offsets_[4];
};

}  // namespace

#endif  // AG_HAVE_AVX2

bool conv_pool_forward_avx2(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                            const float* w, const float* b, float* y, std::uint8_t* winners) {
#ifdef AG_HAVE_AVX2
  if (g.stride != 1 || pool.kernel != 2 || pool.stride != 2) return false;
  const std::int64_t pooled = g.out_channels * pool.out_h * pool.out_w;
  // By channel unless fewer than half of a vector's 8 lanes would hold channels: 6 channels in 8
  // lanes (LeNet-5's conv1) waste a quarter of each vector and still beat the by-width blocks.
  if (g.out_channels > 4) {
    const std::shared_ptr<float[]> w_t = vectorized::channels_innermost(g, w, 8);
    // The bias padded with zeros to whole vectors of 8 channels.
    const std::int64_t padded_channels = (g.out_channels + 7) / 8 * 8;
    auto bias = make_cached_array<float>(static_cast<std::size_t>(padded_channels));
    for (std::int64_t o = 0; o < padded_channels; ++o)
      bias[o] = b && o < g.out_channels ? b[o] : 0.0f;
    b = bias.get();
    std::shared_ptr<float[]> rows;  // 64-byte aligned, read and written as __m256
    if (g.out_channels > 8)
      rows = make_cached_array<float>(static_cast<std::size_t>(2 * (2 * pool.out_w) * 2 * 8));
    // Broadcast loads read only inside the rows, so unpadded input is read in place.
    vectorized::for_each_image(
        g, x, [&](std::int64_t n, const float* image, std::int64_t plane, std::int64_t row_stride) {
          forward_by_channel(g, pool, image, plane, row_stride, w_t.get(), b,
                             reinterpret_cast<__m256*>(rows.get()), y + n * pooled,
                             winners ? winners + n * pooled : nullptr);
        });
    return true;
  }
  // A block's loads reach 15 floats past its row's last conv column: inside PaddedImage's slack.
  if (g.kernel_w > 8) return false;
  PaddedImage xp(g);
  for (std::int64_t n = 0; n < g.batch; ++n) {
    xp.fill(g, x + n * g.image_size());
    forward_by_width(g, pool, xp, w, b, y + n * pooled, winners ? winners + n * pooled : nullptr);
  }
  return true;
#else
  (void)g, (void)pool, (void)x, (void)w, (void)b, (void)y, (void)winners;
  return false;
#endif
}

bool conv_pool_backward_avx2(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                             const float* w, const float* dy, const std::uint8_t* winners,
                             float* dx, float* dw, float* db) {
#ifdef AG_HAVE_AVX2
  return vectorized::backward<Avx2Backward>(g, pool, x, w, dy, winners, dx, dw, db);
#else
  (void)g, (void)pool, (void)x, (void)w, (void)dy, (void)winners, (void)dx, (void)dw, (void)db;
  return false;
#endif
}

}  // namespace ag::kernels
