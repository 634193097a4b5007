// The plain loops of the direct convolution (every geometry, both dtypes: the reference), the choice
// of kernels for each step of conv2d_scaled_tanh_subsampling2d, and the thread's instruction-set
// limit.
#include "ops/fusion/conv_subsampling.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "autograd/allocator.hpp"
#include "ops/fusion/conv_pool.hpp"

namespace ag::kernels {

namespace {

constexpr Isa kBuildIsa =
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    Isa::Avx512;
#elif defined(__AVX2__) && defined(__FMA__)
    Isa::Avx2;
#else
    Isa::Plain;
#endif

thread_local Isa isa_limit = kBuildIsa;

template <class T>
class PlainConvolution final : public DirectConvolution<T> {
 public:
  PlainConvolution(const ConvGeometry& g, const T* w)
      : g_(g), w_(w), dw_sum_(make_cached_array<T>(weights())) {
    std::fill(dw_sum_.get(), dw_sum_.get() + weights(), T(0));
  }

  Isa isa() const override { return Isa::Plain; }

  void forward(const T* x_n, const T* b, T* z_n) override {
    for (std::int64_t o = 0; o < g_.out_channels; ++o)
      for (std::int64_t h = 0; h < g_.out_h; ++h)
        for (std::int64_t col = 0; col < g_.out_w; ++col)
          *z_n++ = conv_at(g_, x_n, w_, b, /*n=*/0, o, h, col);
  }

  void add_grad_w(const T* x_n, const T* dz_n) override {
    for_each_connection(dz_n, [&](T dz, std::int64_t x_at, std::int64_t w_at) {
      dw_sum_[static_cast<std::size_t>(w_at)] += dz * x_n[x_at];
    });
  }

  void finish_grad_w(T* dw) override {
    for (std::size_t k = 0; k < weights(); ++k) dw[k] += dw_sum_[k];
  }

  void grad_x(const T* dz_n, T* dx_n) override {
    std::fill(dx_n, dx_n + g_.image_size(), T(0));
    for_each_connection(dz_n, [&](T dz, std::int64_t x_at, std::int64_t w_at) {
      dx_n[x_at] += dz * w_[w_at];
    });
  }

 private:
  std::size_t weights() const { return static_cast<std::size_t>(g_.out_channels * g_.patch()); }

  // fn(dz, x index, w index) for every connection of an output to an input element inside the
  // image, outputs in row-major order.
  template <class Fn>
  void for_each_connection(const T* dz_n, Fn&& fn) const {
    for (std::int64_t o = 0; o < g_.out_channels; ++o)
      for (std::int64_t h = 0; h < g_.out_h; ++h)
        for (std::int64_t col = 0; col < g_.out_w; ++col) {
          const T dz = *dz_n++;
          for (std::int64_t c = 0; c < g_.in_channels; ++c)
            for (std::int64_t p = 0; p < g_.kernel_h; ++p) {
              const std::int64_t row = h * g_.stride + p - g_.padding;
              if (row < 0 || row >= g_.height) continue;
              for (std::int64_t q = 0; q < g_.kernel_w; ++q) {
                const std::int64_t x_col = col * g_.stride + q - g_.padding;
                if (x_col < 0 || x_col >= g_.width) continue;
                fn(dz, (c * g_.height + row) * g_.width + x_col,
                   ((o * g_.in_channels + c) * g_.kernel_h + p) * g_.kernel_w + q);
              }
            }
        }
  }

  ConvGeometry g_;
  const T* w_;
  std::shared_ptr<T[]> dw_sum_;
};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return "AVX-512";
    case Isa::Avx2:
      return "AVX2";
    case Isa::Plain:
      break;
  }
  return "plain";
}

Isa widest_isa() { return isa_limit; }

IsaLimit::IsaLimit(Isa widest) : previous_(isa_limit) {
  isa_limit = std::min(isa_limit, widest);
}
IsaLimit::~IsaLimit() { isa_limit = previous_; }

template <class T>
std::shared_ptr<DirectConvolution<T>> direct_convolution(const ConvGeometry& g, const T* w) {
  if constexpr (std::is_same_v<T, float>) {
    if (isa_limit >= Isa::Avx512)
      if (auto kernels = direct_convolution_avx512(g, w)) return kernels;
    if (isa_limit >= Isa::Avx2)
      if (auto kernels = direct_convolution_avx2(g, w)) return kernels;
  }
  return std::allocate_shared<PlainConvolution<T>>(CachingAllocator<PlainConvolution<T>>{}, g, w);
}

std::shared_ptr<LaneConvolution> lane_convolution(Isa isa, const ConvGeometry& g, const float* w,
                                                  const ConnectionTable& connections) {
  switch (isa) {
    case Isa::Avx512:
      if (auto kernels = lane_convolution_avx512(g, w, connections)) return kernels;
      [[fallthrough]];
    case Isa::Avx2:
      return lane_convolution_avx2(g, w, connections);
    case Isa::Plain:
      break;
  }
  return nullptr;
}

bool subsample_2x2(Isa isa, std::int64_t channels, std::int64_t height, std::int64_t width,
                   const float* a, const float* weight, const float* bias, float* y) {
  switch (std::min(isa, isa_limit)) {
    case Isa::Avx512:
      return subsample_2x2_avx512(channels, height, width, a, weight, bias, y);
    case Isa::Avx2:
      return subsample_2x2_avx2(channels, height, width, a, weight, bias, y);
    case Isa::Plain:
      break;
  }
  return false;
}

bool subsample_2x2_adjoint(Isa isa, std::int64_t channels, std::int64_t height,
                           std::int64_t width, const float* t, const float* a, const float* scale,
                           SlopeOfScaledTanh slope, bool squared, float* dz, float* grad_b,
                           float* grad_weight, float* grad_bias) {
  switch (std::min(isa, isa_limit)) {
    case Isa::Avx512:
      return subsample_2x2_adjoint_avx512(channels, height, width, t, a, scale, slope, squared, dz,
                                          grad_b, grad_weight, grad_bias);
    case Isa::Avx2:
      return subsample_2x2_adjoint_avx2(channels, height, width, t, a, scale, slope, squared, dz,
                                        grad_b, grad_weight, grad_bias);
    case Isa::Plain:
      break;
  }
  return false;
}

template std::shared_ptr<DirectConvolution<float>> direct_convolution(const ConvGeometry&,
                                                                      const float*);
template std::shared_ptr<DirectConvolution<double>> direct_convolution(const ConvGeometry&,
                                                                       const double*);

}  // namespace ag::kernels
