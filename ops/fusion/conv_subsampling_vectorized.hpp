// The vectorised kernels of conv2d_scaled_tanh_subsampling2d (ops/fusion/conv_subsampling.hpp),
// written once for any register width: conv_subsampling_avx512.cpp instantiates them with 16-float
// registers, conv_subsampling_avx2.cpp with 8-float ones. Internal to those two files, which
// include it only when built for AVX2 or wider.
//
// The direct convolution, in two layouts chosen by shape, as the fused conv + max-pool kernels have
// them (conv_pool_*.cpp):
//   - by width (few output channels, wide images: the 1998 LeNet-5's C1, 6 channels of 28
//     columns): a register holds neighbouring outputs of one channel. The forward keeps rows x
//     vectors x channels sums and loads each input vector once per tap for all channels; grad_w
//     keeps the taps of a kernel row for a few channels, each input vector loaded once for them;
//     grad_x is the forward of the flipped kernel over dz padded by the kernel's size.
//   - by channel (16k output channels, small images: C3, 16 channels of 10 columns): a register
//     (two on AVX2) holds the 16 channels of one position, the weights reordered channels
//     innermost. The forward keeps a row of positions, each input a broadcast; grad_w keeps the
//     taps of a few kernel rows, dz loaded once per position; grad_x sums, for each input
//     position, dz times the weights of every tap that reaches it over the 16 channels (exactly
//     those taps where a row fits one block of sums), and adds the lanes of 16 (8) such sums at
//     once.
// The convolution's results go through NCHW buffers in both, so that the fused op's other steps
// and the plain loops read the same layout.
//
// The 2x2 subsampling: a row pair at a time, 2 L conv columns (L windows) per step; the window
// sums of L windows are the pairwise sums of the two rows' sum, and the step back spreads each
// window's gradient to its two columns by a permutation.
//
// Simd supplies the register type V, kLanes floats wide, and:
//   zero(), set1(v), load(p), store(p, v), load_first(p, n), store_first(p, v, n) (lanes >= n
//   are 0 on load, untouched on store), broadcast(p), fmadd(a, b, c) = a b + c, add(a, b),
//   mul(a, b), fnmadd(a, b, c) = c - a b, sum(v) (of its lanes), store_sums<X>(v[X], out)
//   (out[k] = sum(v[k]), X <= kLanes), pair_sums(a, b) (a0 + a1, a2 + a3, .., then b's pairs),
//   spread_low(v), spread_high(v) (v's first or last kLanes / 2 lanes each twice: v0 v0 v1 v1 ..),
//   hide(p) (keeps a pointer opaque, so that a broadcast stays a memory operand), hold(v) (keeps a
//   loaded value in a register, so that it is not loaded again as each multiply-add's operand);
// and the block sizes, in accumulators that fit its registers:
//   kWidthRows, kWidthVectors, kWidthChannels   forward by width
//   kWidthGradChannels                          grad_w by width, output channels per pass
//   kChannelPositions                           forward by channel, positions per block
//   kChannelGradSums                            grad_w by channel, sums per pass
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>

#include "autograd/allocator.hpp"
#include "ops/fusion/conv_pool_common.hpp"
#include "ops/fusion/conv_subsampling.hpp"

namespace ag::kernels::direct {

using vectorized::PaddedImage;
using vectorized::with_constant;

// Channels in a block of the by-channel layout, in one AVX-512 or two AVX2 registers.
inline constexpr std::int64_t kChannelBlock = 16;

inline std::shared_ptr<float[]> zeroed_array(std::size_t n) {
  auto a = make_cached_array<float>(n);
  std::memset(a.get(), 0, n * sizeof(float));
  return a;
}

// The kernel rows p that reach row y of the (padded) input from one of the Ho output rows, the
// output row being y - p: [first, last], empty when first > last.
struct KernelRows {
  std::int64_t first, last;
};
inline KernelRows kernel_rows_reaching(const ConvGeometry& g, std::int64_t y) {
  return {std::max<std::int64_t>(0, y - g.out_h + 1), std::min<std::int64_t>(g.kernel_h - 1, y)};
}

// ---- By width ----

// z[o0 + o, h0 + r, j0 + v L + lane] for o < CB, r < RB, v < VB (lanes past Wo not stored) of
// the image at `image` (channels `plane` floats apart, rows `row_stride`, already padded: no
// bounds checks, loads may run past a row's end into the next or the buffer's slack).
template <class Simd, int RB, int VB, int CB>
void width_block(const ConvGeometry& g, const float* image, std::int64_t plane,
                 std::int64_t row_stride, const float* w, const float* b, std::int64_t o0,
                 std::int64_t h0, std::int64_t j0, float* z) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  const std::int64_t weights_per_channel = g.in_channels * g.kernel_h * g.kernel_w;
  V sum[RB][VB][CB];
#pragma GCC unroll 8
  for (int o = 0; o < CB; ++o) {
    const V bias = b ? Simd::set1(b[o0 + o]) : Simd::zero();
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < VB; ++v) sum[r][v][o] = bias;
  }
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p) {
      const float* rows = image + c * plane + (h0 + p) * row_stride + j0;
      const float* w_row = w + ((o0 * g.in_channels + c) * g.kernel_h + p) * g.kernel_w;
      for (std::int64_t q = 0; q < g.kernel_w; ++q) {
        // CB weights in registers beside the sums: each input vector is loaded once per tap.
        V weight[CB];
#pragma GCC unroll 8
        for (int o = 0; o < CB; ++o) weight[o] = Simd::set1(w_row[o * weights_per_channel + q]);
#pragma GCC unroll 4
        for (int r = 0; r < RB; ++r)
#pragma GCC unroll 4
          for (int v = 0; v < VB; ++v) {
            const V x = Simd::load(rows + r * row_stride + v * L + q);
#pragma GCC unroll 8
            for (int o = 0; o < CB; ++o) sum[r][v][o] = Simd::fmadd(weight[o], x, sum[r][v][o]);
          }
      }
    }
#pragma GCC unroll 8
  for (int o = 0; o < CB; ++o)
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < VB; ++v) {
        const std::int64_t column = j0 + v * L;
        Simd::store_first(z + ((o0 + o) * g.out_h + h0 + r) * g.out_w + column, sum[r][v][o],
                         static_cast<int>(std::min<std::int64_t>(L, g.out_w - column)));
      }
}

// z:[Cout, Ho, Wo] = b + the convolution of a padded image (see width_block).
template <class Simd>
void width_forward(const ConvGeometry& g, const float* image, std::int64_t plane,
                   std::int64_t row_stride, const float* w, const float* b, float* z) {
  constexpr int L = Simd::kLanes, RB = Simd::kWidthRows, VB = Simd::kWidthVectors,
                CB = Simd::kWidthChannels;
  for (std::int64_t o0 = 0; o0 < g.out_channels; o0 += CB)
    with_constant<CB>(std::min<std::int64_t>(CB, g.out_channels - o0), [&](auto channels) {
      for (std::int64_t j0 = 0; j0 < g.out_w; j0 += VB * L)
        with_constant<VB>((std::min<std::int64_t>(VB * L, g.out_w - j0) + L - 1) / L,
                          [&](auto vectors) {
                            for (std::int64_t h0 = 0; h0 < g.out_h; h0 += RB)
                              with_constant<RB>(
                                  std::min<std::int64_t>(RB, g.out_h - h0), [&](auto rows) {
                                    width_block<Simd, rows, vectors, channels>(
                                        g, image, plane, row_stride, w, b, o0, h0, j0, z);
                                  });
                          });
    });
}

// sums of output channels o0 .. o0 + OB, input channel c, kernel row p, taps q < KW: += the sum
// over positions of dz_o times the image under tap (p, q), a vector of positions at a time (the
// lanes of dz past Wo are 0). Each image vector is loaded once for the OB channels.
// sums:[Cout][Cin][KH][KW][lanes]
template <class Simd, int OB, int KW>
void width_grad_w_row(const ConvGeometry& g, const float* image, std::int64_t plane,
                      std::int64_t row_stride, const float* dz, std::int64_t o0, std::int64_t c,
                      std::int64_t p, float* sums) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V sum[OB][KW];
#pragma GCC unroll 8
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 8
    for (int q = 0; q < KW; ++q) sum[o][q] = Simd::zero();
  const std::int64_t out_h = g.out_h, out_w = g.out_w;
  const float* dz_o = dz + o0 * out_h * out_w;
  const float* rows = image + c * plane + p * row_stride;
  for (std::int64_t h = 0; h < out_h; ++h, dz_o += out_w, rows += row_stride)
    for (std::int64_t column = 0; column < out_w; column += L) {
      const int count = static_cast<int>(std::min<std::int64_t>(L, out_w - column));
      V d[OB];
#pragma GCC unroll 8
      for (int o = 0; o < OB; ++o) d[o] = Simd::load_first(dz_o + o * out_h * out_w + column, count);
#pragma GCC unroll 8
      for (int q = 0; q < KW; ++q) {
        V x = Simd::load(rows + column + q);
        Simd::hold(x);  // one load for the OB multiply-adds, not a memory operand in each
#pragma GCC unroll 8
        for (int o = 0; o < OB; ++o) sum[o][q] = Simd::fmadd(d[o], x, sum[o][q]);
      }
    }
#pragma GCC unroll 8
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 8
    for (int q = 0; q < KW; ++q) {
      float* out = sums + ((((o0 + o) * g.in_channels + c) * g.kernel_h + p) * KW + q) * L;
      Simd::store(out, Simd::add(Simd::load(out), sum[o][q]));
    }
}

template <class Simd>
class ByWidth final : public DirectConvolution<float> {
 public:
  using V = typename Simd::V;

  // Covered: stride 1, KW <= 8, and for grad_x a square kernel and padding below its size (the
  // adjoint is then a convolution of dz padded by KH - 1 - padding).
  static bool covers(const ConvGeometry& g, const float* w) {
    return g.stride == 1 && g.kernel_w <= 8 &&
           (!w || (g.kernel_h == g.kernel_w && g.padding < g.kernel_h));
  }

  ByWidth(const ConvGeometry& g, const float* w)
      : g_(g),
        w_(w),
        image_(g),
        sums_(zeroed_array(static_cast<std::size_t>(g.out_channels * g.patch() * Simd::kLanes))) {}

  Isa isa() const override { return Simd::kIsa; }

  void forward(const float* x_n, const float* b, float* z_n) override {
    image_.fill(g_, x_n);
    width_forward<Simd>(g_, image_.data.get(), image_.plane, image_.padded_w, w_, b, z_n);
  }

  void add_grad_w(const float* x_n, const float* dz_n) override {
    image_.fill(g_, x_n);
    constexpr int OB = Simd::kWidthGradChannels;
    with_constant<8>(g_.kernel_w, [&](auto kernel_w) {
      for (std::int64_t o0 = 0; o0 < g_.out_channels; o0 += OB)
        with_constant<OB>(std::min<std::int64_t>(OB, g_.out_channels - o0), [&](auto channels) {
          for (std::int64_t c = 0; c < g_.in_channels; ++c)
            for (std::int64_t p = 0; p < g_.kernel_h; ++p)
              width_grad_w_row<Simd, channels, kernel_w>(g_, image_.data.get(), image_.plane,
                                                         image_.padded_w, dz_n, o0, c, p,
                                                         sums_.get());
        });
    });
  }

  void finish_grad_w(float* dw) override {
    for (std::int64_t k = 0; k < g_.out_channels * g_.patch(); ++k)
      dw[k] += Simd::sum(Simd::load(sums_.get() + k * Simd::kLanes));
  }

  void grad_x(const float* dz_n, float* dx_n) override {
    if (!adjoint_) adjoint_.emplace(g_, w_);
    adjoint_->dz.fill(adjoint_->g, dz_n);
    width_forward<Simd>(adjoint_->g, adjoint_->dz.data.get(), adjoint_->dz.plane,
                       adjoint_->dz.padded_w, adjoint_->w.get(), nullptr, dx_n);
  }

 private:
  // grad_x as a convolution: dz:[Cout, Ho, Wo] padded by KH - 1 - padding, with the kernel
  // flipped and its channels swapped, w2[c, o, p, q] = w[o, c, KH - 1 - p, KW - 1 - q].
  struct Adjoint {
    ConvGeometry g;
    PaddedImage dz;
    std::shared_ptr<float[]> w;

    static ConvGeometry geometry(const ConvGeometry& g) {
      return {.batch = 1, .in_channels = g.out_channels, .height = g.out_h, .width = g.out_w,
              .out_channels = g.in_channels, .kernel_h = g.kernel_h, .kernel_w = g.kernel_w,
              .out_h = g.height, .out_w = g.width, .stride = 1,
              .padding = g.kernel_h - 1 - g.padding};
    }
    Adjoint(const ConvGeometry& forward, const float* w_forward)
        : g(geometry(forward)), dz(g), w(make_cached_array<float>(static_cast<std::size_t>(
                                           forward.out_channels * forward.patch()))) {
      const std::int64_t KH = forward.kernel_h, KW = forward.kernel_w;
      for (std::int64_t o = 0; o < forward.out_channels; ++o)
        for (std::int64_t c = 0; c < forward.in_channels; ++c)
          for (std::int64_t p = 0; p < KH; ++p)
            for (std::int64_t q = 0; q < KW; ++q)
              w[((c * forward.out_channels + o) * KH + p) * KW + q] =
                  w_forward[((o * forward.in_channels + c) * KH + KH - 1 - p) * KW + KW - 1 - q];
    }
  };

  ConvGeometry g_;
  const float* w_;
  PaddedImage image_;
  std::shared_ptr<float[]> sums_;  // [Cout][Cin][KH][KW][lanes], each tap's sum over its lanes
  std::optional<Adjoint> adjoint_;
};

// ---- By channel ----

// in:[rows][columns] -> out:[columns][rows] (+ bias[column] if given, on the way back), 8 x 8
// blocks by transposes, the rest element by element.
inline void transpose(const float* in, std::int64_t rows, std::int64_t columns, const float* bias,
                      float* out) {
  const auto element = [&](std::int64_t r, std::int64_t c) {
    out[c * rows + r] = in[r * columns + c] + (bias ? bias[c] : 0.0f);
  };
  const std::int64_t full_rows = rows / 8 * 8, full_columns = columns / 8 * 8;
  for (std::int64_t r0 = 0; r0 < full_rows; r0 += 8) {
    for (std::int64_t c0 = 0; c0 < full_columns; c0 += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(in + (r0 + k) * columns + c0);
      vectorized::transpose_8x8(r);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m256 add = bias ? _mm256_set1_ps(bias[c0 + k]) : _mm256_setzero_ps();
        _mm256_storeu_ps(out + (c0 + k) * rows + r0, _mm256_add_ps(r[k], add));
      }
    }
    for (std::int64_t c = full_columns; c < columns; ++c)
      for (std::int64_t k = 0; k < 8; ++k) element(r0 + k, c);
  }
  for (std::int64_t r = full_rows; r < rows; ++r)
    for (std::int64_t c = 0; c < columns; ++c) element(r, c);
}

// zt[(h Wo + w0 + k) Cout + lane] for the 16 channels of one block, positions w0 .. w0 + P of row
// h; w_block:[Cin][KH][KW][16], the block's weights channels innermost.
template <class Simd, int P>
void channel_row(const ConvGeometry& g, const float* image, std::int64_t plane,
                 std::int64_t row_stride, const float* w_block, std::int64_t h, std::int64_t w0,
                 float* zt) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes, CV = kChannelBlock / L;
  V sum[P][CV];
#pragma GCC unroll 16
  for (int k = 0; k < P; ++k)
#pragma GCC unroll 2
    for (int cv = 0; cv < CV; ++cv) sum[k][cv] = Simd::zero();
  const float* weights = w_block;
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p) {
      const float* row = image + c * plane + (h + p) * row_stride + w0;
      for (std::int64_t q = 0; q < g.kernel_w; ++q, weights += kChannelBlock) {
        V weight[CV];
#pragma GCC unroll 2
        for (int cv = 0; cv < CV; ++cv) weight[cv] = Simd::load(weights + cv * L);
        const float* row_q = row + q;
        Simd::hide(row_q);
#pragma GCC unroll 16
        for (int k = 0; k < P; ++k) {
          const V x = Simd::broadcast(row_q + k);
#pragma GCC unroll 2
          for (int cv = 0; cv < CV; ++cv) sum[k][cv] = Simd::fmadd(x, weight[cv], sum[k][cv]);
        }
      }
    }
#pragma GCC unroll 16
  for (int k = 0; k < P; ++k)
#pragma GCC unroll 2
    for (int cv = 0; cv < CV; ++cv) Simd::store(zt + k * g.out_channels + cv * L, sum[k][cv]);
}

// sums[pr][q] (kernel rows p0 .. p0 + PR of input channel c, for one block of 16 output channels)
// += sum over positions of the image under tap (p0 + pr, q) times dzt's 16 channels there.
template <class Simd, int PR, int KW>
void channel_grad_w_rows(const ConvGeometry& g, const float* image, std::int64_t plane,
                         std::int64_t row_stride, const float* dzt_block, std::int64_t c,
                         std::int64_t p0, float* sums) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes, CV = kChannelBlock / L;
  V sum[PR][KW][CV];
#pragma GCC unroll 8
  for (int pr = 0; pr < PR; ++pr)
#pragma GCC unroll 8
    for (int q = 0; q < KW; ++q)
#pragma GCC unroll 2
      for (int cv = 0; cv < CV; ++cv) sum[pr][q][cv] = Simd::zero();
  for (std::int64_t h = 0; h < g.out_h; ++h) {
    const float* rows = image + c * plane + (h + p0) * row_stride;
    for (std::int64_t w = 0; w < g.out_w; ++w) {
      V d[CV];
#pragma GCC unroll 2
      for (int cv = 0; cv < CV; ++cv)
        d[cv] = Simd::load(dzt_block + (h * g.out_w + w) * g.out_channels + cv * L);
      // One pointer per kernel row, so that each tap's broadcast is a constant offset from it
      // (row_stride is known only at run time).
      const float* patch[PR];
#pragma GCC unroll 8
      for (int pr = 0; pr < PR; ++pr) {
        patch[pr] = rows + pr * row_stride + w;
        Simd::hide(patch[pr]);
      }
#pragma GCC unroll 8
      for (int pr = 0; pr < PR; ++pr)
#pragma GCC unroll 8
        for (int q = 0; q < KW; ++q) {
          const V x = Simd::broadcast(patch[pr] + q);
#pragma GCC unroll 2
          for (int cv = 0; cv < CV; ++cv) sum[pr][q][cv] = Simd::fmadd(x, d[cv], sum[pr][q][cv]);
        }
    }
  }
#pragma GCC unroll 8
  for (int pr = 0; pr < PR; ++pr)
#pragma GCC unroll 8
    for (int q = 0; q < KW; ++q)
#pragma GCC unroll 2
      for (int cv = 0; cv < CV; ++cv) {
        float* out = sums + (pr * KW + q) * kChannelBlock + cv * L;
        Simd::store(out, Simd::add(Simd::load(out), sum[pr][q][cv]));
      }
}

// dx[c, y, x0 .. x0 + X) = the sum over the taps (p, q) that reach input position (y, x) from an
// output position, and over all output channels, of dz there times w[o, c, p, q].
// dzh:[Cout / 16][Ho][Wh][16] is dz channels innermost, a block of 16 at a time, with KW - 1 zero
// positions on either side of each row (a position's channels a whole number of cache lines
// apart, so that the X loads of a tap are one base register and constant offsets);
// w_t:[Cout / 16][Cin][KH][KW][16].
template <class Simd, int X>
void channel_grad_x_block(const ConvGeometry& g, const float* dzh, std::int64_t dzh_width,
                          const float* w_t, std::int64_t c, std::int64_t y, std::int64_t x0,
                          float* dx) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes, CV = kChannelBlock / L;
  V sum[X];
#pragma GCC unroll 16
  for (int k = 0; k < X; ++k) sum[k] = Simd::zero();
  // Padded coordinates: output row h = y + padding - p must be one of the Ho rows.
  const std::int64_t y_padded = y + g.padding;
  const auto [p_first, p_last] = kernel_rows_reaching(g, y_padded);
  const std::int64_t blocks = g.out_channels / kChannelBlock;
  const std::int64_t block_floats = g.out_h * dzh_width * kChannelBlock;
  for (std::int64_t block = 0; block < blocks; ++block)
    for (std::int64_t p = p_first; p <= p_last; ++p) {
      const float* weights =
          w_t + ((block * g.in_channels + c) * g.kernel_h + p) * g.kernel_w * kChannelBlock;
      // Output position (h, x + padding - q), at index x + padding - q + KW - 1 of a dzh row.
      const float* row = dzh + block * block_floats +
                         ((y_padded - p) * dzh_width + x0 + g.padding + g.kernel_w - 1) *
                             kChannelBlock;
      for (std::int64_t q = 0; q < g.kernel_w; ++q) {
        const float* d = row - q * kChannelBlock;
#pragma GCC unroll 2
        for (int cv = 0; cv < CV; ++cv) {
          const V weight = Simd::load(weights + q * kChannelBlock + cv * L);
#pragma GCC unroll 16
          for (int k = 0; k < X; ++k)
            sum[k] = Simd::fmadd(Simd::load(d + k * kChannelBlock + cv * L), weight, sum[k]);
        }
      }
    }
  Simd::template store_sums<X>(sum, dx + (c * g.height + y) * g.width + x0);
}

// channel_grad_x_block for a whole row of W <= kLanes positions of an unpadded convolution, taps
// taken exactly: input position k gets tap q from output column m = k - q only for 0 <= m < Wo,
// Wo = W - KW + 1, so no multiply-add is spent on the zeros around dz's rows, and each dz vector
// is loaded once for the KW taps of a kernel row.
template <class Simd, int W, int KW>
void channel_grad_x_row(const ConvGeometry& g, const float* dzh, std::int64_t dzh_width,
                        const float* w_t, std::int64_t c, std::int64_t y, float* dx) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes, CV = kChannelBlock / L, Wo = W - KW + 1;
  V sum[W];
#pragma GCC unroll 16
  for (int k = 0; k < W; ++k) sum[k] = Simd::zero();
  const auto [p_first, p_last] = kernel_rows_reaching(g, y);
  const std::int64_t blocks = g.out_channels / kChannelBlock;
  const std::int64_t block_floats = g.out_h * dzh_width * kChannelBlock;
  for (std::int64_t block = 0; block < blocks; ++block)
    for (std::int64_t p = p_first; p <= p_last; ++p)
#pragma GCC unroll 2
      for (int cv = 0; cv < CV; ++cv) {
        const float* weights =
            w_t + ((block * g.in_channels + c) * g.kernel_h + p) * KW * kChannelBlock + cv * L;
        // Output row y - p, from its first column (past the KW - 1 zero positions).
        const float* row = dzh + block * block_floats +
                           ((y - p) * dzh_width + KW - 1) * kChannelBlock + cv * L;
        V d[Wo];
#pragma GCC unroll 16
        for (int m = 0; m < Wo; ++m) d[m] = Simd::load(row + m * kChannelBlock);
#pragma GCC unroll 8
        for (int q = 0; q < KW; ++q) {
          const V weight = Simd::load(weights + q * kChannelBlock);
#pragma GCC unroll 16
          for (int m = 0; m < Wo; ++m) sum[m + q] = Simd::fmadd(d[m], weight, sum[m + q]);
        }
      }
  Simd::template store_sums<W>(sum, dx + (c * g.height + y) * g.width);
}

template <class Simd>
class ByChannel final : public DirectConvolution<float> {
 public:
  using V = typename Simd::V;

  static bool covers(const ConvGeometry& g) {
    return g.stride == 1 && g.kernel_w <= 8 && g.out_channels % kChannelBlock == 0;
  }

  ByChannel(const ConvGeometry& g, const float* w)
      : g_(g),
        positions_(g.out_h * g.out_w),
        dzh_width_(g.out_w + 2 * (g.kernel_w - 1)),
        w_t_(w ? vectorized::channels_innermost(g, w, kChannelBlock) : nullptr),
        transposed_(make_cached_array<float>(static_cast<std::size_t>(
            std::max(positions_ * g.out_channels, g.patch() * kChannelBlock)))) {
    if (g.padding > 0) image_.emplace(g);
  }

  Isa isa() const override { return Simd::kIsa; }

  void forward(const float* x_n, const float* b, float* z_n) override {
    // Named, not a structured binding: clang 14 (the fuzz build) cannot capture bindings.
    const Image source = image_of(x_n);
    const float* image = source.data;
    const std::int64_t plane = source.plane, row_stride = source.row_stride;
    float* zt = transposed_.get();  // [Ho Wo][Cout]
    constexpr int P = Simd::kChannelPositions;
    for (std::int64_t block = 0; block < g_.out_channels / kChannelBlock; ++block)
      for (std::int64_t h = 0; h < g_.out_h; ++h)
        for (std::int64_t w0 = 0; w0 < g_.out_w; w0 += P)
          with_constant<P>(std::min<std::int64_t>(P, g_.out_w - w0), [&](auto positions) {
            channel_row<Simd, positions>(
                g_, image, plane, row_stride, w_t_.get() + block * kChannelBlock * g_.patch(), h,
                w0, zt + (h * g_.out_w + w0) * g_.out_channels + block * kChannelBlock);
          });
    transpose(zt, positions_, g_.out_channels, b, z_n);
  }

  void add_grad_w(const float* x_n, const float* dz_n) override {
    if (!sums_) sums_ = zeroed_array(static_cast<std::size_t>(g_.out_channels * g_.patch()));
    const Image source = image_of(x_n);
    const float* image = source.data;
    const std::int64_t plane = source.plane, row_stride = source.row_stride;
    float* dzt = transposed_.get();  // [Ho Wo][Cout]
    transpose(dz_n, g_.out_channels, positions_, nullptr, dzt);
    with_constant<8>(g_.kernel_w, [&](auto kernel_w) {
      constexpr int kRows =
          std::clamp(Simd::kChannelGradSums / (int{kernel_w} * int{kChannelBlock / Simd::kLanes}), 1, 8);
      for (std::int64_t block = 0; block < g_.out_channels / kChannelBlock; ++block)
        for (std::int64_t c = 0; c < g_.in_channels; ++c)
          for (std::int64_t p0 = 0; p0 < g_.kernel_h; p0 += kRows)
            with_constant<kRows>(std::min<std::int64_t>(kRows, g_.kernel_h - p0), [&](auto rows) {
              channel_grad_w_rows<Simd, rows, kernel_w>(
                  g_, image, plane, row_stride, dzt + block * kChannelBlock, c, p0,
                  sums_.get() +
                      (((block * g_.in_channels + c) * g_.kernel_h + p0) * kernel_w) *
                          kChannelBlock);
            });
    });
  }

  void finish_grad_w(float* dw) override {
    if (!sums_) return;
    // sums:[Cout / 16][Cin KH KW][16] -> [16][Cin KH KW] a block at a time, added to dw.
    const std::int64_t taps = g_.patch();
    for (std::int64_t block = 0; block < g_.out_channels / kChannelBlock; ++block) {
      transpose(sums_.get() + block * taps * kChannelBlock, taps, kChannelBlock, nullptr,
                transposed_.get());
      float* dw_block = dw + block * kChannelBlock * taps;
      for (std::int64_t k = 0; k < kChannelBlock * taps; ++k) dw_block[k] += transposed_[k];
    }
  }

  void grad_x(const float* dz_n, float* dx_n) override {
    // dzh:[Cout / 16][Ho][Wh][16], KW - 1 zero positions each side of a row (zeroed once).
    const std::int64_t blocks = g_.out_channels / kChannelBlock;
    const std::int64_t block_floats = g_.out_h * dzh_width_ * kChannelBlock;
    if (!dzh_) dzh_ = zeroed_array(static_cast<std::size_t>(blocks * block_floats));
    float* dzh = dzh_.get();
    // Each block's dz:[16][Ho Wo] -> [Ho Wo][16], then each row into the middle of its padded row.
    for (std::int64_t block = 0; block < blocks; ++block) {
      transpose(dz_n + block * kChannelBlock * positions_, kChannelBlock, positions_, nullptr,
                transposed_.get());
      for (std::int64_t h = 0; h < g_.out_h; ++h)
        std::memcpy(dzh + block * block_floats + (h * dzh_width_ + g_.kernel_w - 1) * kChannelBlock,
                    transposed_.get() + h * g_.out_w * kChannelBlock,
                    static_cast<std::size_t>(g_.out_w * kChannelBlock) * sizeof(float));
    }
    constexpr int X = Simd::kLanes;
    // Exact taps where a row fits one block of sums and the kernel is one of the common widths
    // (each pair a compile-time shape); padded rows otherwise.
    if (g_.padding == 0 && g_.width <= X && (g_.kernel_w == 3 || g_.kernel_w == 5)) {
      with_constant<X>(g_.width, [&](auto width) {
        const auto rows = [&](auto kernel_w) {
          if constexpr (int{width} >= int{kernel_w})
            for (std::int64_t c = 0; c < g_.in_channels; ++c)
              for (std::int64_t y = 0; y < g_.height; ++y)
                channel_grad_x_row<Simd, width, kernel_w>(g_, dzh, dzh_width_, w_t_.get(), c, y,
                                                          dx_n);
        };
        if (g_.kernel_w == 3) rows(std::integral_constant<int, 3>{});
        else rows(std::integral_constant<int, 5>{});
      });
      return;
    }
    for (std::int64_t c = 0; c < g_.in_channels; ++c)
      for (std::int64_t y = 0; y < g_.height; ++y)
        for (std::int64_t x0 = 0; x0 < g_.width; x0 += X)
          with_constant<X>(std::min<std::int64_t>(X, g_.width - x0), [&](auto positions) {
            channel_grad_x_block<Simd, positions>(g_, dzh, dzh_width_, w_t_.get(), c, y, x0, dx_n);
          });
  }

 private:
  struct Image {
    const float* data;
    std::int64_t plane, row_stride;
  };
  // x_n as the kernels read it: in place without padding (broadcasts stay inside its rows), else
  // copied into a zero border.
  Image image_of(const float* x_n) {
    if (!image_) return {x_n, g_.height * g_.width, g_.width};
    image_->fill(g_, x_n);
    return {image_->data.get(), image_->plane, image_->padded_w};
  }

  ConvGeometry g_;
  std::int64_t positions_, dzh_width_;
  std::shared_ptr<float[]> w_t_;          // [Cout / 16][Cin][KH][KW][16]
  std::shared_ptr<float[]> transposed_;   // z or dz channels innermost [Ho Wo][Cout]; grad_w's sums
  std::shared_ptr<float[]> dzh_;          // dz for grad_x, [Cout / 16][Ho][Wh][16]
  std::shared_ptr<float[]> sums_;         // grad_w, [Cout / 16][Cin][KH][KW][16]
  std::optional<PaddedImage> image_;
};

// The kernels for g, or null when neither layout covers it.
template <class Simd>
std::shared_ptr<DirectConvolution<float>> make(const ConvGeometry& g, const float* w) {
  if (ByChannel<Simd>::covers(g))
    return std::allocate_shared<ByChannel<Simd>>(CachingAllocator<ByChannel<Simd>>{}, g, w);
  if (ByWidth<Simd>::covers(g, w))
    return std::allocate_shared<ByWidth<Simd>>(CachingAllocator<ByWidth<Simd>>{}, g, w);
  return nullptr;
}

// ---- The 2x2 subsampling ----

template <class Simd>
void subsample_2x2(std::int64_t channels, std::int64_t height, std::int64_t width, const float* a,
                   const float* weight, const float* bias, float* y) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  const std::int64_t out_h = height / 2, out_w = width / 2;
  for (std::int64_t c = 0; c < channels; ++c) {
    const V w = Simd::set1(weight[c]), b = Simd::set1(bias ? bias[c] : 0.0f);
    for (std::int64_t i = 0; i < out_h; ++i) {
      const float* top = a + (c * height + 2 * i) * width;
      const float* bottom = top + width;
      float* out = y + (c * out_h + i) * out_w;
      for (std::int64_t j0 = 0; j0 < out_w; j0 += L) {
        const int windows = static_cast<int>(std::min<std::int64_t>(L, out_w - j0));
        const int left = std::min(L, 2 * windows), right = 2 * windows - L;
        const V columns_left = Simd::add(Simd::load_first(top + 2 * j0, left),
                                         Simd::load_first(bottom + 2 * j0, left));
        const V columns_right =
            right > 0 ? Simd::add(Simd::load_first(top + 2 * j0 + L, right),
                                  Simd::load_first(bottom + 2 * j0 + L, right))
                      : Simd::zero();
        Simd::store_first(out + j0, Simd::fmadd(w, Simd::pair_sums(columns_left, columns_right), b),
                          windows);
      }
    }
  }
}

template <class Simd>
void subsample_2x2_adjoint(std::int64_t channels, std::int64_t height, std::int64_t width,
                           const float* t, const float* a, const float* scale,
                           SlopeOfScaledTanh tanh_slope, bool squared, float* dz, float* grad_b,
                           float* grad_weight, float* grad_bias) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  const std::int64_t out_h = height / 2, out_w = width / 2;
  const V ratio = Simd::set1(tanh_slope.ratio), square = Simd::set1(tanh_slope.square);
  const auto slope = [&](V x) {
    const V s = Simd::mul(ratio, Simd::fnmadd(x, x, square));
    return squared ? Simd::mul(s, s) : s;
  };
  for (std::int64_t c = 0; c < channels; ++c) {
    V sum_dz = Simd::zero(), sum_t_window = Simd::zero(), sum_t = Simd::zero();
    const V channel_scale = dz ? Simd::set1(scale[c]) : Simd::zero();
    for (std::int64_t i = 0; i < out_h; ++i) {
      const float* top = a + (c * height + 2 * i) * width;
      const float* bottom = top + width;
      const float* t_row = t + (c * out_h + i) * out_w;
      float* dz_top = dz ? dz + (c * height + 2 * i) * width : nullptr;
      float* dz_bottom = dz ? dz_top + width : nullptr;
      for (std::int64_t j0 = 0; j0 < out_w; j0 += L) {
        const int windows = static_cast<int>(std::min<std::int64_t>(L, out_w - j0));
        const int left = std::min(L, 2 * windows), right = 2 * windows - L;
        // Lanes past the last window load as 0: they add nothing to any sum, and their dz is 0.
        const V tv = Simd::load_first(t_row + j0, windows);
        sum_t = Simd::add(sum_t, tv);
        const V top_left = Simd::load_first(top + 2 * j0, left);
        const V bottom_left = Simd::load_first(bottom + 2 * j0, left);
        const V top_right = right > 0 ? Simd::load_first(top + 2 * j0 + L, right) : Simd::zero();
        const V bottom_right =
            right > 0 ? Simd::load_first(bottom + 2 * j0 + L, right) : Simd::zero();
        if (grad_weight) {
          V sums = Simd::pair_sums(Simd::add(top_left, bottom_left),
                                   Simd::add(top_right, bottom_right));
          if (squared) sums = Simd::mul(sums, sums);
          sum_t_window = Simd::fmadd(tv, sums, sum_t_window);
        }
        if (!dz) continue;
        const V e = Simd::mul(tv, channel_scale);
        const V e_left = Simd::spread_low(e), e_right = Simd::spread_high(e);
        const auto put = [&](float* out, V e_half, V x, int count) {
          const V d = Simd::mul(e_half, slope(x));
          Simd::store_first(out, d, count);
          sum_dz = Simd::add(sum_dz, d);
        };
        put(dz_top + 2 * j0, e_left, top_left, left);
        put(dz_bottom + 2 * j0, e_left, bottom_left, left);
        if (right > 0) {
          put(dz_top + 2 * j0 + L, e_right, top_right, right);
          put(dz_bottom + 2 * j0 + L, e_right, bottom_right, right);
        }
      }
    }
    if (grad_b) grad_b[c] += Simd::sum(sum_dz);
    if (grad_weight) grad_weight[c] += Simd::sum(sum_t_window);
    if (grad_bias) grad_bias[c] += Simd::sum(sum_t);
  }
}

}  // namespace ag::kernels::direct
