// AVX-512 kernels of the fused convolution + relu + 2x2 max-pool, float32, stride 1.
//
// Forward: direct convolution (no im2col), two conv rows at a time so that each pair of rows pools
// in registers right after its last multiply-add; only pooled values and winner bytes are written.
// Two register layouts, chosen by shape:
//   - by width: a zmm holds 16 neighbouring outputs of one channel (few channels, wide images:
//     LeNet's conv1, 6 channels of 28 columns: 2 rows x 2 vectors x 6 channels = 24 accumulators);
//   - by channel: a zmm holds 16 output channels of one position (16k channels, small images:
//     LeNet's conv2, 2 rows x 10 columns = 20 accumulators, the input broadcast from memory).
// Backward: only winners carry gradient. grad_w and grad_x are sums over winners of a KH x KW
// patch times the winner's gradient; each kernel row (KW <= 8 floats) is one ymm, so a winner
// costs Cin * KH fused multiply-adds per sum and nothing is spent on the other 3 positions.
#include "ops/kernels/conv_pool.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "autograd/allocator.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define AG_HAVE_AVX512 1
// GCC 12 reports the deliberately undefined pass-through operand inside several intrinsics
// (_mm512_undefined_*) as "may be used uninitialized" (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace ag::kernels {

#ifdef AG_HAVE_AVX512

namespace {

// One image copied into a zero border of `padding` on every side, rows of padded_w floats, with
// slack after the last row so that vector loads running past a row's end stay inside the buffer
// (the lanes they read there are never used).
struct PaddedImage {
  std::int64_t padded_h, padded_w, plane;  // floats per row, per channel
  std::shared_ptr<float[]> data;
  static constexpr std::int64_t kSlack = 64;

  explicit PaddedImage(const ConvGeometry& g)
      : padded_h(g.height + 2 * g.padding),
        padded_w(g.width + 2 * g.padding),
        plane(padded_h * padded_w),
        data(make_cached_array<float>(static_cast<std::size_t>(g.in_channels * plane + kSlack))) {
    std::memset(data.get(), 0,
                static_cast<std::size_t>(g.in_channels * plane + kSlack) * sizeof(float));
  }

  // Copies image x_n:[Cin, H, W] into the interior; the border stays zero.
  void fill(const ConvGeometry& g, const float* x_n) {
    for (std::int64_t c = 0; c < g.in_channels; ++c)
      for (std::int64_t h = 0; h < g.height; ++h)
        std::memcpy(data.get() + c * plane + (h + g.padding) * padded_w + g.padding,
                    x_n + (c * g.height + h) * g.width, static_cast<std::size_t>(g.width) * 4);
  }
};

// Calls fn(std::integral_constant<int, k>{}) for the k in 1 .. Max equal to n: kernels keep
// their accumulators in registers only when their counts are compile-time constants.
template <int Max, class Fn>
void with_constant(std::int64_t n, Fn&& fn) {
  [&]<int... K>(std::integer_sequence<int, K...>) {
    (void)((n == K + 1 ? (fn(std::integral_constant<int, K + 1>{}), true) : false) || ...);
  }(std::make_integer_sequence<int, Max>{});
}

// Lanes (0, 2, 4, ...) and (1, 3, 5, ...) of the 32 lanes of two registers: the left and right
// columns of each 2x2 window.
const __m512i kEvenLanes =
    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
const __m512i kOddLanes =
    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);

// The pooled value and winner slot of 16 windows given their four elements, in window order
// (top-left, top-right, bottom-left, bottom-right): the first maximum wins, as in max_pool2d. The
// bias is added after the maximum (the same for all four); relu keeps only positive maxima.
struct Pooled {
  __m512 value;
  __m512i slot;
};
inline Pooled pool_window(__m512 z0, __m512 z1, __m512 z2, __m512 z3, __m512 bias, bool relu) {
  __m512 best = z0;
  __m512i slot = _mm512_setzero_si512();
  __mmask16 m = _mm512_cmp_ps_mask(z1, best, _CMP_GT_OQ);
  best = _mm512_mask_mov_ps(best, m, z1);
  slot = _mm512_mask_mov_epi32(slot, m, _mm512_set1_epi32(1));
  m = _mm512_cmp_ps_mask(z2, best, _CMP_GT_OQ);
  best = _mm512_mask_mov_ps(best, m, z2);
  slot = _mm512_mask_mov_epi32(slot, m, _mm512_set1_epi32(2));
  m = _mm512_cmp_ps_mask(z3, best, _CMP_GT_OQ);
  best = _mm512_mask_mov_ps(best, m, z3);
  slot = _mm512_mask_mov_epi32(slot, m, _mm512_set1_epi32(3));
  best = _mm512_add_ps(best, bias);
  if (relu) {
    const __mmask16 alive = _mm512_cmp_ps_mask(best, _mm512_setzero_ps(), _CMP_GT_OQ);
    best = _mm512_maskz_mov_ps(alive, best);
    slot = _mm512_mask_mov_epi32(_mm512_set1_epi32(kNoWinner), alive, slot);
  }
  return {best, slot};
}

// ---- Forward, by width: CB channels (<= 6), V vectors of 16 columns (out_w <= 16 V) ----

template <int CB, int V>
void forward_by_width_block(const ConvGeometry& g, const PoolGeometry& pool, const PaddedImage& xp,
                            const float* w, const float* b, std::int64_t o0, float* y_n,
                            std::uint8_t* winners_n) {
  const std::int64_t taps = g.kernel_h * g.kernel_w, pooled = pool.out_h * pool.out_w;
  const __mmask16 store_mask = static_cast<__mmask16>((1u << pool.out_w) - 1);
  const float* image = xp.data.get();
  for (std::int64_t i = 0; i < pool.out_h; ++i) {
    __m512 top[V][CB], bottom[V][CB];  // conv rows 2i and 2i + 1
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v)
#pragma GCC unroll 8
      for (int o = 0; o < CB; ++o) top[v][o] = bottom[v][o] = _mm512_setzero_ps();
    for (std::int64_t c = 0; c < g.in_channels; ++c)
      for (std::int64_t p = 0; p < g.kernel_h; ++p) {
        const float* row_top = image + c * xp.plane + (2 * i + p) * xp.padded_w;
        const float* row_bottom = row_top + xp.padded_w;
        const float* w_row = w + ((o0 * g.in_channels + c) * g.kernel_h + p) * g.kernel_w;
        for (std::int64_t q = 0; q < g.kernel_w; ++q) {
          __m512 x_top[V], x_bottom[V];
#pragma GCC unroll 8
          for (int v = 0; v < V; ++v) {
            x_top[v] = _mm512_loadu_ps(row_top + 16 * v + q);
            x_bottom[v] = _mm512_loadu_ps(row_bottom + 16 * v + q);
          }
#pragma GCC unroll 8
          for (int o = 0; o < CB; ++o) {
            const __m512 weight = _mm512_set1_ps(w_row[o * g.in_channels * taps + q]);
#pragma GCC unroll 8
            for (int v = 0; v < V; ++v) {
              top[v][o] = _mm512_fmadd_ps(weight, x_top[v], top[v][o]);
              bottom[v][o] = _mm512_fmadd_ps(weight, x_bottom[v], bottom[v][o]);
            }
          }
        }
      }
#pragma GCC unroll 8
    for (int o = 0; o < CB; ++o) {
      // Columns 2j and 2j + 1 of both rows, for j = 0 .. 15 (lanes past out_w are not stored).
      const __m512 top_hi = V > 1 ? top[V - 1][o] : top[0][o];
      const __m512 bottom_hi = V > 1 ? bottom[V - 1][o] : bottom[0][o];
      const Pooled r = pool_window(_mm512_permutex2var_ps(top[0][o], kEvenLanes, top_hi),
                                   _mm512_permutex2var_ps(top[0][o], kOddLanes, top_hi),
                                   _mm512_permutex2var_ps(bottom[0][o], kEvenLanes, bottom_hi),
                                   _mm512_permutex2var_ps(bottom[0][o], kOddLanes, bottom_hi),
                                   _mm512_set1_ps(b ? b[o0 + o] : 0.0f), pool.relu);
      const std::int64_t out = (o0 + o) * pooled + i * pool.out_w;
      _mm512_mask_storeu_ps(y_n + out, store_mask, r.value);
      if (winners_n)
        _mm_mask_storeu_epi8(winners_n + out, store_mask, _mm512_cvtepi32_epi8(r.slot));
    }
  }
}

template <int V>
void forward_by_width(const ConvGeometry& g, const PoolGeometry& pool, const PaddedImage& xp,
                      const float* w, const float* b, float* y_n, std::uint8_t* winners_n) {
  for (std::int64_t o0 = 0; o0 < g.out_channels; o0 += 6)
    with_constant<6>(std::min<std::int64_t>(6, g.out_channels - o0), [&](auto channels) {
      forward_by_width_block<channels, V>(g, pool, xp, w, b, o0, y_n, winners_n);
    });
}

// ---- Forward, by channel: 16 channels per zmm, PB pooled columns (2 PB conv columns) ----

// w_t:[Cout / 16][Cin][KH][KW][16], the weights with 16 output channels innermost.
template <int PB>
void forward_by_channel_block(const ConvGeometry& g, const PoolGeometry& pool, const float* image,
                              std::int64_t plane, std::int64_t row_stride, const float* w_t,
                              const float* b, std::int64_t o0, std::int64_t i, std::int64_t j0,
                              float* y_n, std::uint8_t* winners_n) {
  constexpr int C = 2 * PB;  // conv columns
  __m512 top[C], bottom[C];
#pragma GCC unroll 16
  for (int k = 0; k < C; ++k) top[k] = bottom[k] = _mm512_setzero_ps();
  const float* weights = w_t + o0 * g.in_channels * g.kernel_h * g.kernel_w;
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p) {
      const float* row_top = image + c * plane + (2 * i + p) * row_stride + 2 * j0;
      const float* row_bottom = row_top + row_stride;
      for (std::int64_t q = 0; q < g.kernel_w; ++q, weights += 16) {
        const __m512 weight = _mm512_loadu_ps(weights);
        const float* top_q = row_top + q;
        const float* bottom_q = row_bottom + q;
        // Hides that top_q[k] is the previous q's top_q[k + 1]: GCC would otherwise keep inputs
        // in registers and broadcast them with shuffles, where a multiply-add with a broadcast
        // memory operand costs nothing extra.
        asm("" : "+r"(top_q), "+r"(bottom_q));
#pragma GCC unroll 16
        for (int k = 0; k < C; ++k) {
          top[k] = _mm512_fmadd_ps(_mm512_set1_ps(top_q[k]), weight, top[k]);
          bottom[k] = _mm512_fmadd_ps(_mm512_set1_ps(bottom_q[k]), weight, bottom[k]);
        }
      }
    }
  const std::int64_t pooled = pool.out_h * pool.out_w;
  const __m512i channel_offsets =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int>(pooled)));
  const __m512 bias = b ? _mm512_loadu_ps(b + o0) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int k = 0; k < PB; ++k) {
    const Pooled r =
        pool_window(top[2 * k], top[2 * k + 1], bottom[2 * k], bottom[2 * k + 1], bias, pool.relu);
    const std::int64_t out = o0 * pooled + i * pool.out_w + j0 + k;  // channel o0's element
    _mm512_i32scatter_ps(y_n + out, channel_offsets, r.value, 4);
    if (winners_n) {
      alignas(16) std::uint8_t slots[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(slots), _mm512_cvtepi32_epi8(r.slot));
      for (int o = 0; o < 16; ++o) winners_n[out + o * pooled] = slots[o];
    }
  }
}

void forward_by_channel(const ConvGeometry& g, const PoolGeometry& pool, const float* image,
                        std::int64_t plane, std::int64_t row_stride, const float* w_t,
                        const float* b, float* y_n, std::uint8_t* winners_n) {
  for (std::int64_t o0 = 0; o0 < g.out_channels; o0 += 16)
    for (std::int64_t i = 0; i < pool.out_h; ++i)
      for (std::int64_t j0 = 0; j0 < pool.out_w; j0 += 6)
        with_constant<6>(std::min<std::int64_t>(6, pool.out_w - j0), [&](auto columns) {
          forward_by_channel_block<columns>(g, pool, image, plane, row_stride, w_t, b, o0, i, j0,
                                            y_n, winners_n);
        });
}

// ---- Backward: sums over winners, one ymm per kernel row ----
//
// The backward reads the input, and sums grad_x, as a padded image whose rows interleave the
// channels: row (y, c) of S floats at (y * Cin + c) * S, S a compile-time 16, 32 or 64 >= the
// padded width. Row (c, p) of the patch under output position (h, w) is then at base + r * S with
// base = (h * Cin) * S + w and r = p * Cin + c: one base pointer and constant offsets, so each
// multiply-add of a patch row is a single instruction, and the whole image stays in L1 (5 KB for
// LeNet's conv2). Kernel rows are taken in that order r = p * Cin + c throughout.

struct Interleaved {
  std::int64_t row_floats;  // S
  std::int64_t padded_h;    // H + 2 padding
  std::int64_t floats(const ConvGeometry& g) const {
    return padded_h * g.in_channels * row_floats + 16;
  }
};

// Which lanes of the 16-float pieces of a padded row are image columns.
struct ImageColumns {
  __mmask16 lanes[4] = {};
  ImageColumns(const ConvGeometry& g, std::int64_t row_floats) {
    for (std::int64_t j = 0; j < row_floats; ++j)
      if (j >= g.padding && j < g.padding + g.width)
        lanes[j / 16] |= static_cast<__mmask16>(1u << (j % 16));
  }
};

// x_n:[Cin, H, W] into the interleaved padded layout (zero border).
void fill_interleaved(const ConvGeometry& g, const Interleaved& layout, const ImageColumns& columns,
                      const float* x_n, float* out) {
  for (std::int64_t y = 0; y < layout.padded_h; ++y)
    for (std::int64_t c = 0; c < g.in_channels; ++c, out += layout.row_floats) {
      const std::int64_t image_y = y - g.padding;
      const bool inside = image_y >= 0 && image_y < g.height;
      // Padded column j is image column j - padding; the masked load reads only image columns
      // (fault suppression covers the lanes before the row's start).
      const float* in = x_n + (c * g.height + (inside ? image_y : 0)) * g.width - g.padding;
      for (std::int64_t j = 0; j < layout.row_floats; j += 16)
        _mm512_storeu_ps(out + j,
                         _mm512_maskz_loadu_ps(inside ? columns.lanes[j / 16] : 0, in + j));
    }
}

// dx_n:[Cin, H, W] += the interior of the interleaved padded image `padded`, which is left zero.
void add_interleaved(const ConvGeometry& g, const Interleaved& layout, const ImageColumns& columns,
                     float* padded, float* dx_n) {
  for (std::int64_t y = 0; y < layout.padded_h; ++y)
    for (std::int64_t c = 0; c < g.in_channels; ++c) {
      float* row = padded + (y * g.in_channels + c) * layout.row_floats;
      const std::int64_t image_y = y - g.padding;
      if (image_y >= 0 && image_y < g.height) {
        float* out = dx_n + (c * g.height + image_y) * g.width - g.padding;
        for (std::int64_t j = 0; j < layout.row_floats; j += 16) {
          const __mmask16 lanes = columns.lanes[j / 16];
          _mm512_mask_storeu_ps(
              out + j, lanes,
              _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, out + j), _mm512_loadu_ps(row + j)));
        }
      }
      for (std::int64_t j = 0; j < layout.row_floats; j += 16)
        _mm512_storeu_ps(row + j, _mm512_setzero_ps());
    }
}

// The winners of one channel of one image that carry gradient, compacted without branches (which
// windows relu cut off is data, where a branch would mispredict): for each, where its patch
// starts in the interleaved image, and its gradient. Returns how many; adds their gradients to
// *grad_b.
struct LiveWinners {
  std::int32_t* patch;
  float* grad;
};
std::int64_t compact_winners(std::int64_t windows, const std::uint8_t* winners_o, const float* dy_o,
                             const std::int32_t* window_offset, __m512i slot_offset,
                             LiveWinners out, float* grad_b) {
  std::int64_t live_count = 0;
  __m512 grad_sum = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < windows; k += 16) {
    const __mmask16 lanes =
        windows - k >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (windows - k)) - 1);
    const __m512i slot = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes, winners_o + k));
    const __m512 grad = _mm512_maskz_loadu_ps(lanes, dy_o + k);
    const __mmask16 live =
        _mm512_mask_cmpneq_epi32_mask(lanes, slot, _mm512_set1_epi32(kNoWinner)) &
        _mm512_cmp_ps_mask(grad, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    const __m512i patch = _mm512_add_epi32(_mm512_maskz_loadu_epi32(lanes, window_offset + k),
                                           _mm512_permutexvar_epi32(slot, slot_offset));
    // Compressed in a register, then stored whole (the lanes past the live ones land in the
    // buffers' slack): Zen 4 runs the compressing store to memory as slow microcode.
    _mm512_storeu_si512(out.patch + live_count, _mm512_maskz_compress_epi32(live, patch));
    _mm512_storeu_ps(out.grad + live_count, _mm512_maskz_compress_ps(live, grad));
    grad_sum = _mm512_mask_add_ps(grad_sum, live, grad_sum, grad);
    live_count += _mm_popcnt_u32(live);
  }
  if (grad_b) *grad_b += _mm512_reduce_add_ps(grad_sum);
  return live_count;
}

// sums[r] (rows [0, R) of a chunk, in r = p * Cin + c order) += sum over live winners of dy *
// (the winner's patch row r); image points at the chunk's first row. With few rows, consecutive
// winners go to separate sets of sums: a multiply-add waits 4 cycles for the one before it in the
// same sum and 2 can start per cycle, so 8 or more sums keep the units busy.
template <int S, int R>
void grad_w_rows(std::int64_t kernel_w, const float* image, std::int64_t live_count,
                 LiveWinners live, float* sums) {
  constexpr int kSets = R >= 8 ? 1 : R >= 4 ? 2 : 4;
  const __mmask8 kernel_lanes = static_cast<__mmask8>((1u << kernel_w) - 1);
  __m256 sum[kSets][R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int set = 0; set < kSets; ++set) sum[set][r] = _mm256_setzero_ps();
  std::int64_t e = 0;
  for (; e + kSets <= live_count; e += kSets)
#pragma GCC unroll 4
    for (int set = 0; set < kSets; ++set) {
      const float* patch = image + live.patch[e + set];
      const __m256 scale = _mm256_set1_ps(live.grad[e + set]);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        sum[set][r] = _mm256_fmadd_ps(scale, _mm256_loadu_ps(patch + S * r), sum[set][r]);
    }
  for (; e < live_count; ++e) {
    const float* patch = image + live.patch[e];
    const __m256 scale = _mm256_set1_ps(live.grad[e]);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
      sum[0][r] = _mm256_fmadd_ps(scale, _mm256_loadu_ps(patch + S * r), sum[0][r]);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int set = 1; set < kSets; ++set) sum[0][r] = _mm256_add_ps(sum[0][r], sum[set][r]);
    _mm256_mask_storeu_ps(
        sums + 8 * r, kernel_lanes,
        _mm256_add_ps(_mm256_maskz_loadu_ps(kernel_lanes, sums + 8 * r), sum[0][r]));
  }
}

// The interleaved grad_x image (rows [0, R) of a chunk) += at each position of each window: the
// sum over the channels that won there of dy * w[o]. slots/grads:[windows][Cout] (channels
// innermost, Cout <= 64); w8:[Cout][R_total][8], kernel rows in r = p * Cin + c order zero-padded
// to 8 lanes, so the lanes a sum adds past the patch are zero.
template <int S, int R>
void grad_x_rows(std::int64_t windows, std::int64_t out_channels, const std::uint8_t* slots,
                 const float* grads, const std::int32_t* window_offset,
                 const std::int32_t* slot_offset, const float* w8, std::int64_t rows_total,
                 float* image) {
  const __mmask64 channels =
      out_channels == 64 ? ~__mmask64(0) : (__mmask64(1) << out_channels) - 1;
  for (std::int64_t k = 0; k < windows; ++k) {
    const __m512i window_slots = _mm512_maskz_loadu_epi8(channels, slots + k * out_channels);
    for (int slot = 0; slot < 4; ++slot) {
      __mmask64 won = _mm512_mask_cmpeq_epi8_mask(channels, window_slots,
                                                  _mm512_set1_epi8(static_cast<char>(slot)));
      if (!won) continue;
      __m256 sum[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_ps();
      for (; won; won &= won - 1) {
        const std::int64_t o = static_cast<std::int64_t>(_tzcnt_u64(won));
        const __m256 scale = _mm256_set1_ps(grads[k * out_channels + o]);
        const float* w_rows = w8 + o * rows_total * 8;
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r)
          sum[r] = _mm256_fmadd_ps(scale, _mm256_loadu_ps(w_rows + 8 * r), sum[r]);
      }
      float* patch = image + window_offset[k] + slot_offset[slot];
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        _mm256_storeu_ps(patch + S * r, _mm256_add_ps(_mm256_loadu_ps(patch + S * r), sum[r]));
    }
  }
}

}  // namespace

#endif  // AG_HAVE_AVX512

bool conv_pool_forward_avx512(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                              const float* w, const float* b, float* y, std::uint8_t* winners) {
#ifdef AG_HAVE_AVX512
  if (g.stride != 1 || pool.kernel != 2 || pool.stride != 2) return false;
  const std::int64_t pooled = g.out_channels * pool.out_h * pool.out_w;
  if (g.out_channels % 16 == 0) {
    // Weights with 16 output channels innermost.
    const std::int64_t taps = g.in_channels * g.kernel_h * g.kernel_w;
    std::shared_ptr<float[]> w_t =
        make_cached_array<float>(static_cast<std::size_t>(g.out_channels * taps));
    // Written in order, read across 16 rows of w: strided stores, one per cache line, took a tenth
    // of a single image's time.
    float* out = w_t.get();
    for (std::int64_t block = 0; block < g.out_channels; block += 16)
      for (std::int64_t t = 0; t < taps; ++t)
        for (std::int64_t lane = 0; lane < 16; ++lane) *out++ = w[(block + lane) * taps + t];
    // Broadcast loads read only inside the padded image, so unpadded input is read in place.
    std::optional<PaddedImage> xp;
    if (g.padding > 0) xp.emplace(g);
    for (std::int64_t n = 0; n < g.batch; ++n) {
      const float* image = x + n * g.image_size();
      std::int64_t plane = g.height * g.width, row_stride = g.width;
      if (xp) {
        xp->fill(g, image);
        image = xp->data.get(), plane = xp->plane, row_stride = xp->padded_w;
      }
      forward_by_channel(g, pool, image, plane, row_stride, w_t.get(), b, y + n * pooled,
                         winners ? winners + n * pooled : nullptr);
    }
    return true;
  }
  if (g.out_w > 32) return false;
  PaddedImage xp(g);
  for (std::int64_t n = 0; n < g.batch; ++n) {
    xp.fill(g, x + n * g.image_size());
    std::uint8_t* winners_n = winners ? winners + n * pooled : nullptr;
    if (g.out_w > 16)
      forward_by_width<2>(g, pool, xp, w, b, y + n * pooled, winners_n);
    else
      forward_by_width<1>(g, pool, xp, w, b, y + n * pooled, winners_n);
  }
  return true;
#else
  (void)g, (void)pool, (void)x, (void)w, (void)b, (void)y, (void)winners;
  return false;
#endif
}

bool conv_pool_backward_avx512(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                               const float* w, const float* dy, const std::uint8_t* winners,
                               float* dx, float* dw, float* db) {
#ifdef AG_HAVE_AVX512
  if (g.stride != 1 || pool.kernel != 2 || pool.stride != 2 || g.kernel_w > 8) return false;
  const std::int64_t padded_w = g.width + 2 * g.padding;
  if (padded_w > 64 || (dx && g.out_channels > 64)) return false;
  const Interleaved layout{.row_floats = padded_w <= 16   ? 16
                                         : padded_w <= 32 ? 32
                                                          : 64,
                           .padded_h = g.height + 2 * g.padding};
  const std::int64_t S = layout.row_floats;
  const ImageColumns columns(g, S);
  const std::int64_t windows = pool.out_h * pool.out_w, R = g.in_channels * g.kernel_h;
  const std::int64_t conv_row = g.in_channels * S;  // from one conv output row to the next
  // Sums run over kernel rows 16 at a time: 16 ymm sums plus operands fit the 32 registers.
  constexpr std::int64_t kRowChunk = 16;

  // Where the patch of window k's top-left element starts in the interleaved image, and where its
  // other elements' start relative to it (slot 1 right, 2 below, 3 below right).
  auto window_offset = make_cached_array<std::int32_t>(static_cast<std::size_t>(windows));
  for (std::int64_t k = 0; k < windows; ++k)
    window_offset[k] =
        static_cast<std::int32_t>(2 * (k / pool.out_w) * conv_row + 2 * (k % pool.out_w));
  const std::int32_t slot_offsets[4] = {0, 1, static_cast<std::int32_t>(conv_row),
                                        static_cast<std::int32_t>(conv_row + 1)};
  const __m512i slot_offset = _mm512_maskz_loadu_epi32(0xF, slot_offsets);

  auto live_patch = make_cached_array<std::int32_t>(static_cast<std::size_t>(windows + 16));
  auto live_grad = make_cached_array<float>(static_cast<std::size_t>(windows + 16));
  const LiveWinners live{live_patch.get(), live_grad.get()};
  const auto image_floats = static_cast<std::size_t>(layout.floats(g));
  auto x_image = make_cached_array<float>(image_floats);
  std::memset(x_image.get(), 0, image_floats * sizeof(float));
  // grad_w summed in r = p * Cin + c row order, 8 floats a row, reordered at the end.
  auto w_sums = make_cached_array<float>(static_cast<std::size_t>(g.out_channels * R * 8));
  if (dw)
    std::memset(w_sums.get(), 0, static_cast<std::size_t>(g.out_channels * R * 8) * sizeof(float));

  // For grad_x: kernel rows in r order zero-padded to 8 lanes, each image's winners and
  // gradients with channels innermost, and a zeroed interleaved image to sum into.
  std::shared_ptr<float[]> w8, window_grads, dx_image;
  std::shared_ptr<std::uint8_t[]> window_slots;
  if (dx) {
    w8 = make_cached_array<float>(static_cast<std::size_t>(g.out_channels * R * 8));
    for (std::int64_t o = 0; o < g.out_channels; ++o)
      for (std::int64_t p = 0; p < g.kernel_h; ++p)
        for (std::int64_t c = 0; c < g.in_channels; ++c)
          for (std::int64_t q = 0; q < 8; ++q)
            w8[((o * g.kernel_h + p) * g.in_channels + c) * 8 + q] =
                q < g.kernel_w ? w[((o * g.in_channels + c) * g.kernel_h + p) * g.kernel_w + q]
                               : 0.0f;
    window_grads = make_cached_array<float>(static_cast<std::size_t>(windows * g.out_channels));
    window_slots =
        make_cached_array<std::uint8_t>(static_cast<std::size_t>(windows * g.out_channels + 64));
    dx_image = make_cached_array<float>(image_floats);
    std::memset(dx_image.get(), 0, image_floats * sizeof(float));
  }

  const auto with_row_floats = [&](auto&& fn) {
    if (S == 16)
      fn(std::integral_constant<int, 16>{});
    else if (S == 32)
      fn(std::integral_constant<int, 32>{});
    else
      fn(std::integral_constant<int, 64>{});
  };
  for (std::int64_t n = 0; n < g.batch; ++n) {
    const std::int64_t image_out = n * g.out_channels * windows;
    if (dw) fill_interleaved(g, layout, columns, x + n * g.image_size(), x_image.get());
    for (std::int64_t o = 0; o < g.out_channels; ++o) {
      const std::int64_t count =
          compact_winners(windows, winners + image_out + o * windows, dy + image_out + o * windows,
                          window_offset.get(), slot_offset, live, db ? db + o : nullptr);
      if (!dw) continue;
      for (std::int64_t r0 = 0; r0 < R; r0 += kRowChunk)
        with_row_floats([&](auto row_floats) {
          with_constant<kRowChunk>(std::min(kRowChunk, R - r0), [&](auto chunk) {
            grad_w_rows<row_floats, chunk>(g.kernel_w, x_image.get() + r0 * S, count, live,
                                           w_sums.get() + (o * R + r0) * 8);
          });
        });
    }
    if (!dx) continue;
    // Winners and gradients transposed to [window][channel]; a dead winner's 0xFF matches no slot.
    for (std::int64_t o = 0; o < g.out_channels; ++o)
      for (std::int64_t k = 0; k < windows; ++k) {
        window_slots[k * g.out_channels + o] = winners[image_out + o * windows + k];
        window_grads[k * g.out_channels + o] = dy[image_out + o * windows + k];
      }
    for (std::int64_t r0 = 0; r0 < R; r0 += kRowChunk)
      with_row_floats([&](auto row_floats) {
        with_constant<kRowChunk>(std::min(kRowChunk, R - r0), [&](auto chunk) {
          grad_x_rows<row_floats, chunk>(windows, g.out_channels, window_slots.get(),
                                         window_grads.get(), window_offset.get(), slot_offsets,
                                         w8.get() + r0 * 8, R, dx_image.get() + r0 * S);
        });
      });
    add_interleaved(g, layout, columns, dx_image.get(), dx + n * g.image_size());
  }
  if (dw)
    for (std::int64_t o = 0; o < g.out_channels; ++o)
      for (std::int64_t p = 0; p < g.kernel_h; ++p)
        for (std::int64_t c = 0; c < g.in_channels; ++c)
          for (std::int64_t q = 0; q < g.kernel_w; ++q)
            dw[((o * g.in_channels + c) * g.kernel_h + p) * g.kernel_w + q] +=
                w_sums[((o * g.kernel_h + p) * g.in_channels + c) * 8 + q];
  return true;
#else
  (void)g, (void)pool, (void)x, (void)w, (void)dy, (void)winners, (void)dx, (void)dw, (void)db;
  return false;
#endif
}

}  // namespace ag::kernels
