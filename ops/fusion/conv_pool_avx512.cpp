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
// grad_x sums a window's four patches in registers first (KW <= 7: KW + 1 columns in a ymm).
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "autograd/allocator.hpp"
#include "ops/fusion/conv_pool.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define AG_HAVE_AVX512 1
#include "ops/fusion/conv_pool_common.hpp"
// GCC 12 reports the deliberately undefined pass-through operand inside several intrinsics
// (_mm512_undefined_*) as "may be used uninitialized" (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace ag::kernels {

#ifdef AG_HAVE_AVX512

namespace {

using vectorized::LiveWinners;
using vectorized::PaddedImage;
using vectorized::with_constant;

// Lanes (0, 2, 4, ...) and (1, 3, 5, ...) of the 32 lanes of two registers: the left and right
// columns of each 2x2 window.
const __m512i kEvenLanes =
    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
const __m512i kOddLanes =
    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);

// The pooled value and winner slot of 16 windows given their four elements, in window order
// (top-left, top-right, bottom-left, bottom-right): the first maximum wins, as in max_pool2d. The
// bias is added after the maximum (the same for all four); relu keeps only positive maxima.
// Without `winners` (a forward that saves nothing) the slots are left zero and the value is taken
// by maxima: max(a, b) is "a > b ? a : b", as the comparisons, so the values agree bit for bit,
// NaN and signed zeros included, in 5 instructions instead of 13.
struct Pooled {
  __m512 value;
  __m512i slot;
};
[[gnu::always_inline]] inline Pooled pool_window(__m512 z0, __m512 z1, __m512 z2, __m512 z3,
                                                 __m512 bias, bool relu, bool winners) {
  if (!winners) {
    const __m512 best =
        _mm512_add_ps(_mm512_max_ps(z3, _mm512_max_ps(z2, _mm512_max_ps(z1, z0))), bias);
    return {relu ? _mm512_max_ps(best, _mm512_setzero_ps()) : best, _mm512_setzero_si512()};
  }
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

// ---- Forward, by width: CB channels (<= 6), V vectors of 16 conv columns from pooled column j0

template <int CB, int V>
void forward_by_width_block(const ConvGeometry& g, const PoolGeometry& pool, const PaddedImage& xp,
                            const float* w, const float* b, std::int64_t o0, std::int64_t j0,
                            float* y_n, std::uint8_t* winners_n) {
  const std::int64_t taps = g.kernel_h * g.kernel_w, pooled = pool.out_h * pool.out_w;
  const std::int64_t columns = std::min<std::int64_t>(8 * V, pool.out_w - j0);
  const __mmask16 store_mask = static_cast<__mmask16>((1u << columns) - 1);
  const float* image = xp.data.get() + 2 * j0;
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
      // Columns 2j and 2j + 1 of both rows, for j = 0 .. 8 V - 1 (lanes past out_w are not
      // stored).
      const __m512 top_hi = V > 1 ? top[V - 1][o] : top[0][o];
      const __m512 bottom_hi = V > 1 ? bottom[V - 1][o] : bottom[0][o];
      const Pooled r = pool_window(_mm512_permutex2var_ps(top[0][o], kEvenLanes, top_hi),
                                   _mm512_permutex2var_ps(top[0][o], kOddLanes, top_hi),
                                   _mm512_permutex2var_ps(bottom[0][o], kEvenLanes, bottom_hi),
                                   _mm512_permutex2var_ps(bottom[0][o], kOddLanes, bottom_hi),
                                   _mm512_set1_ps(b ? b[o0 + o] : 0.0f), pool.relu,
                                   winners_n != nullptr);
      const std::int64_t out = (o0 + o) * pooled + i * pool.out_w + j0;
      _mm512_mask_storeu_ps(y_n + out, store_mask, r.value);
      if (winners_n)
        _mm_mask_storeu_epi8(winners_n + out, store_mask, _mm512_cvtepi32_epi8(r.slot));
    }
  }
}

// Tiles of 16 pooled columns (32 conv columns, 2 vectors); an image of 16 or fewer pooled columns
// takes one vector. Loads reach at most 31 + KW - 1 floats past a tile's first conv column: inside
// the row or PaddedImage's slack.
void forward_by_width(const ConvGeometry& g, const PoolGeometry& pool, const PaddedImage& xp,
                      const float* w, const float* b, float* y_n, std::uint8_t* winners_n) {
  for (std::int64_t o0 = 0; o0 < g.out_channels; o0 += 6)
    with_constant<6>(std::min<std::int64_t>(6, g.out_channels - o0), [&](auto channels) {
      for (std::int64_t j0 = 0; j0 < pool.out_w; j0 += 16) {
        if (pool.out_w - j0 > 8)
          forward_by_width_block<channels, 2>(g, pool, xp, w, b, o0, j0, y_n, winners_n);
        else
          forward_by_width_block<channels, 1>(g, pool, xp, w, b, o0, j0, y_n, winners_n);
      }
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
        pool_window(top[2 * k], top[2 * k + 1], bottom[2 * k], bottom[2 * k + 1], bias, pool.relu,
                    winners_n != nullptr);
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

// ---- Backward: sums over winners, one ymm per kernel row (layout: conv_pool_common.hpp) ----

// The steps of vectorized::backward with AVX-512 masks.
class Avx512Backward {
 public:
  // Sums run over kernel rows 16 at a time for grad_w and extended rows 18 at a time for grad_x:
  // the ymm sums plus operands fit the 32 registers (36 at once spilled).
  static constexpr std::int64_t kRowChunk = 16, kWindowRowChunk = 18;

  Avx512Backward(const ConvGeometry& g, const vectorized::Interleaved& layout,
                 const std::int32_t (&slot_offsets)[4])
      : g_(g), layout_(layout), slot_offset_(_mm512_maskz_loadu_epi32(0xF, slot_offsets)) {
    for (std::int64_t j = 0; j < layout.row_floats; ++j)
      if (j >= g.padding && j < g.padding + g.width)
        image_lanes_[j / 16] |= static_cast<__mmask16>(1u << (j % 16));
  }

  // x_n:[Cin, H, W] into the interleaved padded layout (zero border).
  void fill_interleaved(const float* x_n, float* out) const {
    for (std::int64_t y = 0; y < layout_.padded_h; ++y)
      for (std::int64_t c = 0; c < g_.in_channels; ++c, out += layout_.row_floats) {
        const std::int64_t image_y = y - g_.padding;
        const bool inside = image_y >= 0 && image_y < g_.height;
        // Padded column j is image column j - padding; the masked load reads only image columns
        // (fault suppression covers the lanes before the row's start).
        const float* in = x_n + (c * g_.height + (inside ? image_y : 0)) * g_.width - g_.padding;
        for (std::int64_t j = 0; j < layout_.row_floats; j += 16)
          _mm512_storeu_ps(out + j,
                           _mm512_maskz_loadu_ps(inside ? image_lanes_[j / 16] : 0, in + j));
      }
  }

  // dx_n:[Cin, H, W] += the interior of the interleaved padded image `padded`, which is left zero.
  void add_interleaved(float* padded, float* dx_n) const {
    for (std::int64_t y = 0; y < layout_.padded_h; ++y)
      for (std::int64_t c = 0; c < g_.in_channels; ++c) {
        float* row = padded + (y * g_.in_channels + c) * layout_.row_floats;
        const std::int64_t image_y = y - g_.padding;
        if (image_y >= 0 && image_y < g_.height) {
          float* out = dx_n + (c * g_.height + image_y) * g_.width - g_.padding;
          for (std::int64_t j = 0; j < layout_.row_floats; j += 16) {
            const __mmask16 lanes = image_lanes_[j / 16];
            _mm512_mask_storeu_ps(
                out + j, lanes,
                _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, out + j), _mm512_loadu_ps(row + j)));
          }
        }
        for (std::int64_t j = 0; j < layout_.row_floats; j += 16)
          _mm512_storeu_ps(row + j, _mm512_setzero_ps());
      }
  }

  // The winners of one channel of one image that carry gradient, compacted without branches
  // (which windows relu cut off is data, where a branch would mispredict). Returns how many; adds
  // their gradients to *grad_b.
  std::int64_t compact_winners(std::int64_t windows, const std::uint8_t* winners_o,
                               const float* dy_o, const std::int32_t* window_offset,
                               LiveWinners out, float* grad_b) const {
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
                                             _mm512_permutexvar_epi32(slot, slot_offset_));
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
  // winners go to separate sets of sums: a multiply-add waits 4 cycles for the one before it in
  // the same sum and 2 can start per cycle, so 8 or more sums keep the units busy.
  template <int S, int R>
  void grad_w_rows(std::int64_t kernel_w, const float* image, std::int64_t live_count,
                   LiveWinners live, float* sums) const {
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

  // The interleaved grad_x image += at each window, rows [0, E) of a chunk of its extended rows
  // (vectorized::WindowKernelRows): the sum over the channels that won at any of its four slots
  // of dy * their kernel rows, summed in registers and added to the image once. (Added slot by
  // slot, each patch row would be loaded right after an overlapping store one float to its left,
  // which a store cannot forward, and every load would wait for the store to complete.)
  // slots/grads:[windows][Cout] (channels innermost, Cout <= 64); the chunk starts at extended
  // row e0.
  template <int S, int E>
  void grad_x_rows(std::int64_t windows, std::int64_t out_channels, const std::uint8_t* slots,
                   const float* grads, const std::int32_t* window_offset,
                   const vectorized::WindowKernelRows& kernel, std::int64_t e0,
                   float* image) const {
    const __mmask64 channels =
        out_channels == 64 ? ~__mmask64(0) : (__mmask64(1) << out_channels) - 1;
    const float* w = kernel.row(e0);
    const std::int64_t channel_floats = kernel.channel_floats;
    const float* bases[4] = {w, w + kernel.shifted, w - kernel.below,
                             w + kernel.shifted - kernel.below};
    for (std::int64_t k = 0; k < windows; ++k) {
      const __m512i window_slots = _mm512_maskz_loadu_epi8(channels, slots + k * out_channels);
      __m256 sum[E];
#pragma GCC unroll 32
      for (int r = 0; r < E; ++r) sum[r] = _mm256_setzero_ps();
      for (int slot = 0; slot < 4; ++slot) {
        __mmask64 won = _mm512_mask_cmpeq_epi8_mask(channels, window_slots,
                                                    _mm512_set1_epi8(static_cast<char>(slot)));
        for (; won; won &= won - 1) {
          const std::int64_t o = static_cast<std::int64_t>(_tzcnt_u64(won));
          const __m256 scale = _mm256_set1_ps(grads[k * out_channels + o]);
          const float* w_rows = bases[slot] + o * channel_floats;
#pragma GCC unroll 32
          for (int r = 0; r < E; ++r)
            sum[r] = _mm256_fmadd_ps(scale, _mm256_loadu_ps(w_rows + 8 * r), sum[r]);
        }
      }
      float* patch = image + window_offset[k];
#pragma GCC unroll 32
      for (int r = 0; r < E; ++r)
        _mm256_storeu_ps(patch + S * r, _mm256_add_ps(_mm256_loadu_ps(patch + S * r), sum[r]));
    }
  }

 private:
  const ConvGeometry& g_;
  const vectorized::Interleaved& layout_;
  __m512i slot_offset_;
  __mmask16 image_lanes_[4] = {};  // which lanes of the 16-float pieces of a row are image columns
};

}  // namespace

#endif  // AG_HAVE_AVX512

bool conv_pool_forward_avx512(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                              const float* w, const float* b, float* y, std::uint8_t* winners) {
#ifdef AG_HAVE_AVX512
  if (g.stride != 1 || pool.kernel != 2 || pool.stride != 2) return false;
  const std::int64_t pooled = g.out_channels * pool.out_h * pool.out_w;
  if (g.out_channels % 16 == 0) {
    // Weights with 16 output channels innermost.
    const std::shared_ptr<float[]> w_t = vectorized::channels_innermost(g, w, 16);
    // Broadcast loads read only inside the rows, so unpadded input is read in place.
    vectorized::for_each_image(
        g, x, [&](std::int64_t n, const float* image, std::int64_t plane, std::int64_t row_stride) {
          forward_by_channel(g, pool, image, plane, row_stride, w_t.get(), b, y + n * pooled,
                             winners ? winners + n * pooled : nullptr);
        });
    return true;
  }
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

bool conv_pool_backward_avx512(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                               const float* w, const float* dy, const std::uint8_t* winners,
                               float* dx, float* dw, float* db) {
#ifdef AG_HAVE_AVX512
  return vectorized::backward<Avx512Backward>(g, pool, x, w, dy, winners, dx, dw, db);
#else
  (void)g, (void)pool, (void)x, (void)w, (void)dy, (void)winners, (void)dx, (void)dw, (void)db;
  return false;
#endif
}

}  // namespace ag::kernels
