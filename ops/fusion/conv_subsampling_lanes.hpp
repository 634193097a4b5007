// The lanes kernels of conv2d_scaled_tanh_subsampling2d (kernels::LaneConvolution in
// ops/fusion/conv_subsampling.hpp): a block of images at once, one image in each lane of the
// registers, every value of a block stored images innermost, [C][H][W][lanes]. Written once for any
// register width, like conv_subsampling_vectorized.hpp (which it follows, and whose transpose it
// uses); conv_subsampling_avx512.cpp and conv_subsampling_avx2.cpp instantiate it.
//
// With the images in the lanes, each weight is one broadcast for a register of images, so a pair
// of channels is a unit of work that can be left out: the pairs a connection table does not
// connect cost nothing (the 1998 LeNet-5's C3 reads 60 of its 96 pairs). The three passes:
//   - forward: per output channel and row, a row of positions in registers; the input rows of each
//     connected channel loaded once per kernel row for all its taps;
//   - grad_w: per input channel and kernel row, the taps of a few connected output channels in
//     registers, each input vector loaded once for them;
//   - grad_x: per input channel and row, a row of positions in registers, over the connected output
//     channels: a whole row with its taps taken exactly where it fits the registers (C3's), else
//     blocks of a row from a dz whose rows have KW - 1 zero positions either side (no bounds
//     checks).
// Simd is conv_subsampling_vectorized.hpp's, with three more block sizes:
//   kLanePositions        forward, positions of a row in registers
//   kLaneGradOutputs      grad_w, output channels per pass
//   kLaneGradXPositions   grad_x, positions of a row in registers
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "ops/fusion/conv_subsampling_vectorized.hpp"

namespace ag::kernels::lanes {

using direct::transpose;
using direct::zeroed_array;
using vectorized::with_constant;

// The channels one channel is connected to, in order.
using ChannelList = std::span<const std::int64_t>;

// z[o, h, w0 + k] for k < P: b + the sum over the connected input channels `inputs` of w_o (output
// channel o's weights, [Cin][KH][KW]) times the block's image x.
template <class Simd, int P, int KW>
void forward_row(const ConvGeometry& g, const float* x, const float* w_o, ChannelList inputs,
                 float bias, std::int64_t o, std::int64_t h, std::int64_t w0, float* z) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V sum[P];
#pragma GCC unroll 16
  for (int k = 0; k < P; ++k) sum[k] = Simd::set1(bias);
  for (const std::int64_t c : inputs)
    for (std::int64_t p = 0; p < g.kernel_h; ++p) {
      const float* row = x + ((c * g.height + h + p) * g.width + w0) * L;
      V input[P + KW - 1];
#pragma GCC unroll 24
      for (int k = 0; k < P + KW - 1; ++k) input[k] = Simd::load(row + k * L);
      const float* taps = w_o + (c * g.kernel_h + p) * KW;
#pragma GCC unroll 8
      for (int q = 0; q < KW; ++q) {
        const V weight = Simd::set1(taps[q]);
#pragma GCC unroll 16
        for (int k = 0; k < P; ++k) sum[k] = Simd::fmadd(weight, input[k + q], sum[k]);
      }
    }
#pragma GCC unroll 16
  for (int k = 0; k < P; ++k) Simd::store(z + ((o * g.out_h + h) * g.out_w + w0 + k) * L, sum[k]);
}

// sums[o_k][c][p][q] += the sum over positions and lanes' images of dz[o_k] times x[c] under tap
// (p, q), for the OB output channels `outputs` (all connected to c). dz rows are `dz_width` wide,
// the row's first position at KW - 1. sums:[Cout][Cin][KH][KW][L]
template <class Simd, int OB, int KW>
void grad_w_row(const ConvGeometry& g, const float* x, const float* dz, std::int64_t dz_width,
                const std::int64_t* outputs, std::int64_t c, std::int64_t p, float* sums) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V sum[OB][KW];
#pragma GCC unroll 8
  for (int k = 0; k < OB; ++k)
#pragma GCC unroll 8
    for (int q = 0; q < KW; ++q) sum[k][q] = Simd::zero();
  for (std::int64_t h = 0; h < g.out_h; ++h) {
    const float* row = x + (c * g.height + h + p) * g.width * L;
    const float* dz_row[OB];
#pragma GCC unroll 8
    for (int k = 0; k < OB; ++k)
      dz_row[k] = dz + ((outputs[k] * g.out_h + h) * dz_width + KW - 1) * L;
    for (std::int64_t w = 0; w < g.out_w; ++w) {
      V d[OB];
#pragma GCC unroll 8
      for (int k = 0; k < OB; ++k) d[k] = Simd::load(dz_row[k] + w * L);
#pragma GCC unroll 8
      for (int q = 0; q < KW; ++q) {
        V input = Simd::load(row + (w + q) * L);
        Simd::hold(input);  // one load for the OB multiply-adds
#pragma GCC unroll 8
        for (int k = 0; k < OB; ++k) sum[k][q] = Simd::fmadd(d[k], input, sum[k][q]);
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < OB; ++k)
#pragma GCC unroll 8
    for (int q = 0; q < KW; ++q) {
      float* out = sums + (((outputs[k] * g.in_channels + c) * g.kernel_h + p) * KW + q) * L;
      Simd::store(out, Simd::add(Simd::load(out), sum[k][q]));
    }
}

// dx[c, y, x0 + k] for k < X: the sum over the output channels `outputs` connected to c, the
// kernel rows p that reach row y from an output row, and the taps q, of w[o, c, p, q] times dz at
// (y - p, x0 + k - q) (0 outside the output: the padded rows of dz).
template <class Simd, int X, int KW>
void grad_x_row(const ConvGeometry& g, const float* dz, std::int64_t dz_width, const float* w,
                ChannelList outputs, std::int64_t c, std::int64_t y, std::int64_t x0, float* dx) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes;
  V sum[X];
#pragma GCC unroll 16
  for (int k = 0; k < X; ++k) sum[k] = Simd::zero();
  const auto [p_first, p_last] = direct::kernel_rows_reaching(g, y);
  for (const std::int64_t o : outputs)
    for (std::int64_t p = p_first; p <= p_last; ++p) {
      // dz at output position m = x0 + k - q is at index m + KW - 1 of its padded row.
      const float* row = dz + ((o * g.out_h + y - p) * dz_width + x0 + KW - 1) * L;
      const float* taps = w + ((o * g.in_channels + c) * g.kernel_h + p) * KW;
#pragma GCC unroll 8
      for (int q = 0; q < KW; ++q) {
        const V weight = Simd::set1(taps[q]);
#pragma GCC unroll 16
        for (int k = 0; k < X; ++k)
          sum[k] = Simd::fmadd(weight, Simd::load(row + (k - q) * L), sum[k]);
      }
    }
#pragma GCC unroll 16
  for (int k = 0; k < X; ++k) Simd::store(dx + ((c * g.height + y) * g.width + x0 + k) * L, sum[k]);
}

// grad_x_row for a whole row of W positions of an unpadded convolution, taps taken exactly: input
// position k gets tap q from output position m = k - q only for 0 <= m < Wo = W - KW + 1, and each
// row of dz is loaded once into registers for the KW taps of a kernel row (the same sums, in the
// same order, as grad_x_row, without its multiply-adds by the zeros around dz's rows).
template <class Simd, int W, int KW>
void grad_x_whole_row(const ConvGeometry& g, const float* dz, std::int64_t dz_width,
                      const float* w, ChannelList outputs, std::int64_t c, std::int64_t y,
                      float* dx) {
  using V = typename Simd::V;
  constexpr int L = Simd::kLanes, Wo = W - KW + 1;
  V sum[W];
#pragma GCC unroll 16
  for (int k = 0; k < W; ++k) sum[k] = Simd::zero();
  const auto [p_first, p_last] = direct::kernel_rows_reaching(g, y);
  for (const std::int64_t o : outputs)
    for (std::int64_t p = p_first; p <= p_last; ++p) {
      const float* row = dz + ((o * g.out_h + y - p) * dz_width + KW - 1) * L;
      const float* taps = w + ((o * g.in_channels + c) * g.kernel_h + p) * KW;
      V d[Wo];
#pragma GCC unroll 16
      for (int m = 0; m < Wo; ++m) d[m] = Simd::load(row + m * L);
#pragma GCC unroll 8
      for (int q = 0; q < KW; ++q) {
        const V weight = Simd::set1(taps[q]);
#pragma GCC unroll 16
        for (int m = 0; m < Wo; ++m) sum[m + q] = Simd::fmadd(weight, d[m], sum[m + q]);
      }
    }
#pragma GCC unroll 16
  for (int k = 0; k < W; ++k) Simd::store(dx + ((c * g.height + y) * g.width + k) * L, sum[k]);
}

template <class Simd>
class Lanes final : public LaneConvolution {
 public:
  using V = typename Simd::V;
  static constexpr int L = Simd::kLanes;

  // Stride 1, no padding, kernels at most 8 wide, an output of whole 2x2 windows.
  static bool covers(const ConvGeometry& g) {
    return g.stride == 1 && g.padding == 0 && g.kernel_w <= 8 && g.out_h % 2 == 0 &&
           g.out_w % 2 == 0;
  }

  Lanes(const ConvGeometry& g, const float* w, const ConnectionTable& connections)
      : g_(g),
        w_(w),
        inputs_(make_cached_array<std::int64_t>(static_cast<std::size_t>(g.out_channels * g.in_channels))),
        outputs_(make_cached_array<std::int64_t>(static_cast<std::size_t>(g.out_channels * g.in_channels))),
        input_counts_(make_cached_array<std::int64_t>(static_cast<std::size_t>(g.out_channels))),
        output_counts_(make_cached_array<std::int64_t>(static_cast<std::size_t>(g.in_channels))),
        dz_width_(g.out_w + 2 * (g.kernel_w - 1)) {
    std::fill_n(input_counts_.get(), g.out_channels, 0);
    std::fill_n(output_counts_.get(), g.in_channels, 0);
    for (std::int64_t o = 0; o < g.out_channels; ++o)
      for (std::int64_t c = 0; c < g.in_channels; ++c)
        if (connections.connects(o, c)) {
          inputs_[o * g.in_channels + input_counts_[o]++] = c;
          outputs_[c * g.out_channels + output_counts_[c]++] = o;
        }
  }

  Isa isa() const override { return Simd::kIsa; }
  std::int64_t lanes() const override { return L; }

  void to_lanes(const float* images, std::int64_t count, std::int64_t size, float* out) override {
    if (count == L) return transpose(images, L, size, nullptr, out);
    const auto staged = zeroed_array(static_cast<std::size_t>(L * size));
    std::memcpy(staged.get(), images, static_cast<std::size_t>(count * size) * sizeof(float));
    transpose(staged.get(), L, size, nullptr, out);
  }

  void to_images(const float* in, std::int64_t count, std::int64_t size, float* images) override {
    if (count == L) return transpose(in, size, L, nullptr, images);
    const auto staged = make_cached_array<float>(static_cast<std::size_t>(L * size));
    transpose(in, size, L, nullptr, staged.get());
    std::memcpy(images, staged.get(), static_cast<std::size_t>(count * size) * sizeof(float));
  }

  void forward(const float* x, const float* b, float* z) override {
    constexpr int P = Simd::kLanePositions;
    with_constant<8>(g_.kernel_w, [&](auto kernel_w) {
      for (std::int64_t o = 0; o < g_.out_channels; ++o) {
        const float* w_o = w_ + o * g_.patch();
        const ChannelList inputs = inputs_of(o);
        for (std::int64_t h = 0; h < g_.out_h; ++h)
          for (std::int64_t w0 = 0; w0 < g_.out_w; w0 += P)
            with_constant<P>(std::min<std::int64_t>(P, g_.out_w - w0), [&](auto positions) {
              forward_row<Simd, positions, kernel_w>(g_, x, w_o, inputs, b ? b[o] : 0.0f, o, h,
                                                     w0, z);
            });
      }
    });
  }

  void subsample(const float* a, const float* weight, const float* bias, float* y) override {
    const std::int64_t out_h = g_.out_h / 2, out_w = g_.out_w / 2;
    for (std::int64_t o = 0; o < g_.out_channels; ++o) {
      const V w = Simd::set1(weight[o]), b = Simd::set1(bias ? bias[o] : 0.0f);
      for (std::int64_t i = 0; i < out_h; ++i)
        for (std::int64_t j = 0; j < out_w; ++j) {
          const float* top = a + ((o * g_.out_h + 2 * i) * g_.out_w + 2 * j) * L;
          const float* bottom = top + g_.out_w * L;
          // In row-major order, as subsampling2d adds a window.
          const V sum = Simd::add(Simd::add(Simd::add(Simd::load(top), Simd::load(top + L)),
                                            Simd::load(bottom)),
                                  Simd::load(bottom + L));
          Simd::store(y + ((o * out_h + i) * out_w + j) * L, Simd::fmadd(w, sum, b));
        }
    }
  }

  void subsample_adjoint(const float* t, const float* a, const float* scale,
                         SlopeOfScaledTanh tanh_slope, bool squared, float* grad_b,
                         float* grad_weight, float* grad_bias) override {
    const std::int64_t out_h = g_.out_h / 2, out_w = g_.out_w / 2;
    const V ratio = Simd::set1(tanh_slope.ratio), square = Simd::set1(tanh_slope.square);
    const auto slope = [&](V x) {
      const V s = Simd::mul(ratio, Simd::fnmadd(x, x, square));
      return squared ? Simd::mul(s, s) : s;
    };
    for (std::int64_t o = 0; o < g_.out_channels; ++o) {
      V sum_dz = Simd::zero(), sum_t_window = Simd::zero(), sum_t = Simd::zero();
      const V channel_scale = scale ? Simd::set1(scale[o]) : Simd::zero();
      if (scale && !dz_) make_dz();
      for (std::int64_t i = 0; i < out_h; ++i)
        for (std::int64_t j = 0; j < out_w; ++j) {
          const V tv = Simd::load(t + ((o * out_h + i) * out_w + j) * L);
          sum_t = Simd::add(sum_t, tv);
          const float* top = a + ((o * g_.out_h + 2 * i) * g_.out_w + 2 * j) * L;
          const float* bottom = top + g_.out_w * L;
          const V corner[4] = {Simd::load(top), Simd::load(top + L), Simd::load(bottom),
                               Simd::load(bottom + L)};
          if (grad_weight) {
            V sum = Simd::add(Simd::add(Simd::add(corner[0], corner[1]), corner[2]), corner[3]);
            if (squared) sum = Simd::mul(sum, sum);
            sum_t_window = Simd::fmadd(tv, sum, sum_t_window);
          }
          if (!scale) continue;
          const V e = Simd::mul(tv, channel_scale);
          float* dz_top = dz_.get() + ((o * g_.out_h + 2 * i) * dz_width_ + g_.kernel_w - 1 + 2 * j) * L;
          float* dz_at[4] = {dz_top, dz_top + L, dz_top + dz_width_ * L, dz_top + (dz_width_ + 1) * L};
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            const V d = Simd::mul(e, slope(corner[k]));
            Simd::store(dz_at[k], d);
            sum_dz = Simd::add(sum_dz, d);
          }
        }
      if (grad_b) grad_b[o] += Simd::sum(sum_dz);
      if (grad_weight) grad_weight[o] += Simd::sum(sum_t_window);
      if (grad_bias) grad_bias[o] += Simd::sum(sum_t);
    }
  }

  void add_grad_w(const float* x) override {
    if (!sums_) sums_ = zeroed_array(static_cast<std::size_t>(g_.out_channels * g_.patch() * L));
    constexpr int OB = Simd::kLaneGradOutputs;
    with_constant<8>(g_.kernel_w, [&](auto kernel_w) {
      for (std::int64_t c = 0; c < g_.in_channels; ++c) {
        const ChannelList outputs = outputs_of(c);
        const std::int64_t count = static_cast<std::int64_t>(outputs.size());
        for (std::int64_t k0 = 0; k0 < count; k0 += OB)
          with_constant<OB>(std::min<std::int64_t>(OB, count - k0), [&](auto block) {
            for (std::int64_t p = 0; p < g_.kernel_h; ++p)
              grad_w_row<Simd, block, kernel_w>(g_, x, dz_.get(), dz_width_, outputs.data() + k0,
                                                c, p, sums_.get());
          });
      }
    });
  }

  void finish_grad_w(float* dw) override {
    if (!sums_) return;
    for (std::int64_t k = 0; k < g_.out_channels * g_.patch(); ++k)
      dw[k] += Simd::sum(Simd::load(sums_.get() + k * L));
  }

  void grad_x(float* dx) override {
    constexpr int X = Simd::kLaneGradXPositions;
    // A row of at most X positions (C3's 14) in registers whole, for the common kernel widths.
    if (g_.width <= X && (g_.kernel_w == 3 || g_.kernel_w == 5)) {
      with_constant<X>(g_.width, [&](auto width) {
        const auto rows = [&](auto kernel_w) {
          if constexpr (int{width} >= int{kernel_w})
            for (std::int64_t c = 0; c < g_.in_channels; ++c)
              for (std::int64_t y = 0; y < g_.height; ++y)
                grad_x_whole_row<Simd, width, kernel_w>(g_, dz_.get(), dz_width_, w_,
                                                        outputs_of(c), c, y, dx);
        };
        if (g_.kernel_w == 3) rows(std::integral_constant<int, 3>{});
        else rows(std::integral_constant<int, 5>{});
      });
      return;
    }
    with_constant<8>(g_.kernel_w, [&](auto kernel_w) {
      for (std::int64_t c = 0; c < g_.in_channels; ++c) {
        const ChannelList outputs = outputs_of(c);
        for (std::int64_t y = 0; y < g_.height; ++y)
          for (std::int64_t x0 = 0; x0 < g_.width; x0 += X)
            with_constant<X>(std::min<std::int64_t>(X, g_.width - x0), [&](auto positions) {
              grad_x_row<Simd, positions, kernel_w>(g_, dz_.get(), dz_width_, w_, outputs, c, y,
                                                    x0, dx);
            });
      }
    });
  }

 private:
  // dz, made by the first subsample_adjoint that wants it (a forward alone never does). The
  // adjoint writes its rows whole: only the KW - 1 positions either side of each row need zeros.
  void make_dz() {
    dz_ = make_cached_array<float>(static_cast<std::size_t>(g_.out_channels * g_.out_h * dz_width_ * L));
    const std::int64_t border = (g_.kernel_w - 1) * L;
    for (std::int64_t row = 0; row < g_.out_channels * g_.out_h; ++row) {
      float* first = dz_.get() + row * dz_width_ * L;
      std::fill_n(first, border, 0.0f);
      std::fill_n(first + dz_width_ * L - border, border, 0.0f);
    }
  }

  ChannelList inputs_of(std::int64_t o) const {
    return {inputs_.get() + o * g_.in_channels, static_cast<std::size_t>(input_counts_[o])};
  }
  ChannelList outputs_of(std::int64_t c) const {
    return {outputs_.get() + c * g_.out_channels, static_cast<std::size_t>(output_counts_[c])};
  }

  // From the caching allocator, as everything else: a steady step makes no heap allocation.
  ConvGeometry g_;
  const float* w_;
  std::shared_ptr<std::int64_t[]> inputs_;   // [Cout][Cin]: row o begins with the inputs o reads
  std::shared_ptr<std::int64_t[]> outputs_;  // [Cin][Cout]: row c begins with the outputs reading c
  std::shared_ptr<std::int64_t[]> input_counts_, output_counts_;
  std::int64_t dz_width_;
  std::shared_ptr<float[]> dz_;    // [Cout][Ho][Wo + 2 (KW - 1)][L], zero outside the output; lazy
  std::shared_ptr<float[]> sums_;  // grad_w, [Cout][Cin][KH][KW][L]
};

template <class Simd>
std::shared_ptr<LaneConvolution> make(const ConvGeometry& g, const float* w,
                                      const ConnectionTable& connections) {
  if (!Lanes<Simd>::covers(g)) return nullptr;
  return std::allocate_shared<Lanes<Simd>>(CachingAllocator<Lanes<Simd>>{}, g, w, connections);
}

}  // namespace ag::kernels::lanes
