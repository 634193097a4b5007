// What the vectorised conv + relu + 2x2 max-pool kernels (conv_pool_avx512.cpp, conv_pool_avx2.cpp)
// share: their buffers, orderings and the backward's loop, everything that does not depend on the
// register width. Internal to those two files, which include it only when built for AVX2 or wider.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "autograd/allocator.hpp"
#include "ops/fusion/conv_pool.hpp"

namespace ag::kernels::vectorized {

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

// Calls fn(n, image, plane, row_stride) for each image n of x:[N, Cin, H, W]: image points at its
// first channel, `plane` floats from one channel to the next and `row_stride` from one row to the
// next. With padding the image is copied into a zero border first; without, it is read in place
// (for kernels whose loads stay inside the rows they read).
template <class Fn>
void for_each_image(const ConvGeometry& g, const float* x, Fn&& fn) {
  std::optional<PaddedImage> xp;
  if (g.padding > 0) xp.emplace(g);
  for (std::int64_t n = 0; n < g.batch; ++n) {
    const float* image = x + n * g.image_size();
    if (!xp) {
      fn(n, image, g.height * g.width, g.width);
      continue;
    }
    xp->fill(g, image);
    fn(n, static_cast<const float*>(xp->data.get()), xp->plane, xp->padded_w);
  }
}

// Calls fn(std::integral_constant<int, k>{}) for the k in 1 .. Max equal to n: kernels keep
// their accumulators in registers only when their counts are compile-time constants.
template <int Max, class Fn>
void with_constant(std::int64_t n, Fn&& fn) {
  [&]<int... K>(std::integer_sequence<int, K...>) {
    (void)((n == K + 1 ? (fn(std::integral_constant<int, K + 1>{}), true) : false) || ...);
  }
  (std::make_integer_sequence<int, Max>{});
}

// Transposes the 8 x 8 floats of r[0 .. 8) in place: lane l of r[k] becomes lane k of r[l].
[[gnu::always_inline]] inline void transpose_8x8(__m256 (&r)[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
#pragma GCC unroll 2
  for (int k = 0; k < 2; ++k) {
    u[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    u[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    u[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    u[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
    r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
  }
}

// w:[Cout][Cin][KH][KW] -> w_t:[ceil(Cout / lanes)][Cin][KH][KW][lanes], `lanes` (a multiple
// of 8) output channels innermost, the lanes past Cout zero. 8 taps of 8 channels at a time by an
// 8 x 8 transpose, so that reads and writes are whole vectors: element by element it would read
// across `lanes` rows of w, one float from each, on every single-image forward.
inline std::shared_ptr<float[]> channels_innermost(const ConvGeometry& g, const float* w,
                                                   std::int64_t lanes) {
  const std::int64_t taps = g.patch(), blocks = (g.out_channels + lanes - 1) / lanes;
  auto w_t = make_cached_array<float>(static_cast<std::size_t>(blocks * lanes * taps));
  for (std::int64_t first = 0; first < blocks * lanes; first += 8) {
    // Channels first .. first + 7 go to lanes lane0 .. lane0 + 7 of their block.
    const std::int64_t channels = std::clamp<std::int64_t>(g.out_channels - first, 0, 8);
    const std::int64_t lane0 = first % lanes;
    const float* rows = w + first * taps;
    float* out = w_t.get() + (first - lane0) * taps + lane0;
    std::int64_t t = 0;
    for (; t + 8 <= taps; t += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int lane = 0; lane < 8; ++lane)
        r[lane] = lane < channels ? _mm256_loadu_ps(rows + lane * taps + t) : _mm256_setzero_ps();
      transpose_8x8(r);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm256_storeu_ps(out + (t + k) * lanes, r[k]);
    }
    for (; t < taps; ++t)
      for (std::int64_t lane = 0; lane < 8; ++lane)
        out[t * lanes + lane] = lane < channels ? rows[lane * taps + t] : 0.0f;
  }
  return w_t;
}

// ---- The backward's layout ----
//
// The backward reads the input, and sums grad_x, as a padded image whose rows interleave the
// channels: row (y, c) of S floats at (y * Cin + c) * S, S a compile-time 16, 32 or 64 >= the
// padded width. Row (c, p) of the patch under output position (h, w) is then at base + r * S with
// base = (h * Cin) * S + w and r = p * Cin + c: one base pointer and constant offsets, so each
// multiply-add of a patch row is a single instruction, and the whole image stays in L1 (5 KB for
// LeNet's conv2). Kernel rows are taken in that order r = p * Cin + c throughout, each row of at
// most 8 floats (KW <= 8) held in one 8-float register.

struct Interleaved {
  std::int64_t row_floats;  // S
  std::int64_t padded_h;    // H + 2 padding
  std::int64_t rows;        // R = Cin * KH, kernel rows of one output channel

  // The layout for g, or row_floats 0 when the padded width is over 64 or KW over 8.
  explicit Interleaved(const ConvGeometry& g)
      : row_floats(g.kernel_w > 8                  ? 0
                   : g.width + 2 * g.padding <= 16 ? 16
                   : g.width + 2 * g.padding <= 32 ? 32
                   : g.width + 2 * g.padding <= 64 ? 64
                                                   : 0),
        padded_h(g.height + 2 * g.padding),
        rows(g.in_channels * g.kernel_h) {}

  // Floats of one image, with slack for an 8- or 16-float load at the last patch row's end.
  std::size_t floats(const ConvGeometry& g) const {
    return static_cast<std::size_t>(padded_h * g.in_channels * row_floats + 16);
  }

  // Calls fn(std::integral_constant<int, S>{}).
  template <class Fn>
  void with_row_floats(Fn&& fn) const {
    if (row_floats == 16)
      fn(std::integral_constant<int, 16>{});
    else if (row_floats == 32)
      fn(std::integral_constant<int, 32>{});
    else
      fn(std::integral_constant<int, 64>{});
  }
};

// Where the patch of pooling window k's top-left element starts in the interleaved image
// (windows of a 2x2, stride 2 pool over a stride-1 convolution).
inline std::shared_ptr<std::int32_t[]> window_offsets(const ConvGeometry& g,
                                                      const PoolGeometry& pool,
                                                      const Interleaved& layout) {
  const std::int64_t windows = pool.out_h * pool.out_w;
  const std::int64_t conv_row = g.in_channels * layout.row_floats;
  auto offsets = make_cached_array<std::int32_t>(static_cast<std::size_t>(windows));
  for (std::int64_t k = 0; k < windows; ++k)
    offsets[k] = static_cast<std::int32_t>(2 * (k / pool.out_w) * conv_row + 2 * (k % pool.out_w));
  return offsets;
}

// For grad_x by window: w:[Cout][Cin][KH][KW] -> [2][Cout][(KH + 2) Cin][8]. In each half,
// channel o's kernel rows (r = p * Cin + c order, zero-padded to 8 lanes) sit at rows Cin + r,
// with Cin zero rows before and after; the second half has every row moved one lane right (lane 0
// zero). A 2x2 window's four patches then cover (KH + 1) Cin "extended" rows of KW + 1 columns
// from its top-left corner: extended row e gets, from a channel that won at slot 0, 1, 2 or 3,
// row Cin + e of the first half, of the second, row e of the first or of the second.
struct WindowKernelRows {
  std::shared_ptr<float[]> data;
  std::int64_t extended;        // (KH + 1) Cin rows a window's sums cover
  std::int64_t channel_floats;  // from one output channel's rows to the next
  std::int64_t shifted;         // from the first half to the second
  std::int64_t below;           // from a row to the one a lower slot reads (Cin rows)

  WindowKernelRows(const ConvGeometry& g, const float* w)
      : extended((g.kernel_h + 1) * g.in_channels),
        channel_floats((g.kernel_h + 2) * g.in_channels * 8),
        shifted(g.out_channels * channel_floats),
        below(g.in_channels * 8) {
    data = make_cached_array<float>(static_cast<std::size_t>(2 * shifted));
    std::fill(data.get(), data.get() + 2 * shifted, 0.0f);
    for (std::int64_t o = 0; o < g.out_channels; ++o)
      for (std::int64_t p = 0; p < g.kernel_h; ++p)
        for (std::int64_t c = 0; c < g.in_channels; ++c)
          for (std::int64_t q = 0; q < g.kernel_w; ++q) {
            const float v = w[((o * g.in_channels + c) * g.kernel_h + p) * g.kernel_w + q];
            float* row =
                data.get() + o * channel_floats + (g.in_channels + p * g.in_channels + c) * 8;
            row[q] = v;
            row[shifted + q + 1] = v;
          }
  }

  // Extended row e of channel 0 in the unshifted half (past its Cin leading zero rows, `below`
  // floats), what slot 0 reads.
  const float* row(std::int64_t e) const { return data.get() + below + e * 8; }
};

// dw:[Cout][Cin][KH][KW] += sums:[Cout][R][8], summed in r = p * Cin + c row order, 8 lanes a row.
inline void add_kernel_rows_of_8(const ConvGeometry& g, const float* sums, float* dw) {
  for (std::int64_t o = 0; o < g.out_channels; ++o)
    for (std::int64_t p = 0; p < g.kernel_h; ++p)
      for (std::int64_t c = 0; c < g.in_channels; ++c)
        for (std::int64_t q = 0; q < g.kernel_w; ++q)
          dw[((o * g.in_channels + c) * g.kernel_h + p) * g.kernel_w + q] +=
              sums[((o * g.kernel_h + p) * g.in_channels + c) * 8 + q];
}

// Winners and gradients of image n transposed to [window][channel] (a dead winner's 0xFF matches
// no slot), for the grad_x sums that go window by window.
inline void channels_innermost(const ConvGeometry& g, std::int64_t windows,
                               const std::uint8_t* winners_n, const float* dy_n,
                               std::uint8_t* window_slots, float* window_grads) {
  for (std::int64_t o = 0; o < g.out_channels; ++o)
    for (std::int64_t k = 0; k < windows; ++k) {
      window_slots[k * g.out_channels + o] = winners_n[o * windows + k];
      window_grads[k * g.out_channels + o] = dy_n[o * windows + k];
    }
}

// The winners of one channel of one image that carry gradient (compact_winners): for each, where
// its patch starts in the interleaved image, and its gradient.
struct LiveWinners {
  std::int32_t* patch;
  float* grad;
};

// The backward (conv_pool_backward_avx512 / _avx2) for either register width. Isa, constructed
// once per call from (g, layout, slot_offsets), supplies the steps:
//   fill_interleaved(x_n, image)           image = x_n in the interleaved layout (zero border)
//   compact_winners(windows, winners_o, dy_o, window_offset, live, grad_b) -> live count, and
//                                          *grad_b += their gradients (grad_b may be null)
//   grad_w_rows<S, R>(kernel_w, image, count, live, sums)
//   grad_x_rows<S, E>(windows, cout, window_slots, window_grads, window_offset, kernel, e0,
//                     image)                   kernel: WindowKernelRows, e0 the chunk's first row
//   add_interleaved(image, dx_n)           dx_n += image's interior, image left zero
// and kRowChunk / kWindowRowChunk, how many rows one pass of grad_w_rows / grad_x_rows sums
// (registers).
template <class Isa>
bool backward(const ConvGeometry& g, const PoolGeometry& pool, const float* x, const float* w,
              const float* dy, const std::uint8_t* winners, float* dx, float* dw, float* db) {
  if (g.stride != 1 || pool.kernel != 2 || pool.stride != 2) return false;
  const Interleaved layout(g);
  // grad_x sums a window's four patches in rows of KW + 1 columns, one ymm each.
  if (layout.row_floats == 0 || (dx && (g.out_channels > 64 || g.kernel_w > 7))) return false;
  const std::int64_t S = layout.row_floats, R = layout.rows;
  const std::int64_t windows = pool.out_h * pool.out_w;
  const std::int64_t conv_row = g.in_channels * S;  // from one conv output row to the next

  // Where each window's top-left element's patch starts, and where its other elements' start
  // relative to it (slot 1 right, 2 below, 3 below right).
  const std::shared_ptr<std::int32_t[]> window_offset = window_offsets(g, pool, layout);
  const std::int32_t slot_offsets[4] = {0, 1, static_cast<std::int32_t>(conv_row),
                                        static_cast<std::int32_t>(conv_row + 1)};
  Isa isa(g, layout, slot_offsets);

  auto live_patch = make_cached_array<std::int32_t>(static_cast<std::size_t>(windows + 16));
  auto live_grad = make_cached_array<float>(static_cast<std::size_t>(windows + 16));
  const LiveWinners live{live_patch.get(), live_grad.get()};
  const std::size_t image_floats = layout.floats(g);
  auto x_image = make_cached_array<float>(image_floats);
  std::memset(x_image.get(), 0, image_floats * sizeof(float));
  // grad_w summed in r = p * Cin + c row order, 8 floats a row, reordered at the end.
  const auto sum_floats = static_cast<std::size_t>(g.out_channels * R * 8);
  auto w_sums = make_cached_array<float>(sum_floats);
  if (dw) std::memset(w_sums.get(), 0, sum_floats * sizeof(float));

  // For grad_x: the kernel rows, each image's winners and gradients with channels innermost, and
  // a zeroed interleaved image to sum into.
  std::optional<WindowKernelRows> w_rows;
  std::shared_ptr<float[]> window_grads, dx_image;
  std::shared_ptr<std::uint8_t[]> window_slots;
  if (dx) {
    w_rows.emplace(g, w);
    window_grads = make_cached_array<float>(static_cast<std::size_t>(windows * g.out_channels));
    window_slots =
        make_cached_array<std::uint8_t>(static_cast<std::size_t>(windows * g.out_channels + 64));
    dx_image = make_cached_array<float>(image_floats);
    std::memset(dx_image.get(), 0, image_floats * sizeof(float));
  }

  constexpr std::int64_t kChunk = Isa::kRowChunk, kWindowChunk = Isa::kWindowRowChunk;
  for (std::int64_t n = 0; n < g.batch; ++n) {
    const std::int64_t image_out = n * g.out_channels * windows;
    if (dw) isa.fill_interleaved(x + n * g.image_size(), x_image.get());
    for (std::int64_t o = 0; o < g.out_channels; ++o) {
      const std::int64_t count = isa.compact_winners(
          windows, winners + image_out + o * windows, dy + image_out + o * windows,
          window_offset.get(), live, db ? db + o : nullptr);
      if (!dw) continue;
      for (std::int64_t r0 = 0; r0 < R; r0 += kChunk)
        layout.with_row_floats([&](auto row_floats) {
          with_constant<kChunk>(std::min(kChunk, R - r0), [&](auto chunk) {
            isa.template grad_w_rows<row_floats, chunk>(g.kernel_w, x_image.get() + r0 * S, count,
                                                        live, w_sums.get() + (o * R + r0) * 8);
          });
        });
    }
    if (!dx) continue;
    channels_innermost(g, windows, winners + image_out, dy + image_out, window_slots.get(),
                       window_grads.get());
    for (std::int64_t e0 = 0; e0 < w_rows->extended; e0 += kWindowChunk)
      layout.with_row_floats([&](auto row_floats) {
        with_constant<kWindowChunk>(std::min(kWindowChunk, w_rows->extended - e0), [&](auto chunk) {
          isa.template grad_x_rows<row_floats, chunk>(windows, g.out_channels, window_slots.get(),
                                                      window_grads.get(), window_offset.get(),
                                                      *w_rows, e0, dx_image.get() + e0 * S);
        });
      });
    isa.add_interleaved(dx_image.get(), dx + n * g.image_size());
  }
  if (dw) add_kernel_rows_of_8(g, w_sums.get(), dw);
  return true;
}

}  // namespace ag::kernels::vectorized
