// conv2d_scaled_tanh_subsampling2d: forward, backward and curvature rule side by side. Each image,
// or each block of images in the lanes of the registers, goes through the convolution
// (ops/fusion/conv_subsampling.hpp), the scaled tanh and the subsampling while its values are in
// the caches; the backward takes the same steps in reverse.
#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "autograd/allocator.hpp"
#include "ops/fusion/conv_subsampling.hpp"
#include "ops/fusion/fusion.hpp"

// GCC 12 reports the deliberately undefined pass-through operand inside the AVX-512 intrinsics
// of Eigen's vectorised tanh (_mm512_undefined_ps) as "may be used uninitialized" (GCC bug 105593,
// fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace ag {

namespace {

// The scaled tanh and the subsampling after a convolution of geometry g: windows of `kernel`
// every `stride` over the Ho x Wo conv output, Ph x Pw of them.
struct Subsampling {
  std::int64_t kernel, stride, out_h, out_w;
  double amplitude, slope;

  // 2x2 windows every 2 covering the whole conv output: what the vectorised kernels take.
  bool tiles_2x2(const ConvGeometry& g) const {
    return kernel == 2 && stride == 2 && 2 * out_h == g.out_h && 2 * out_w == g.out_w;
  }
};

Subsampling subsampling_geometry(const ConvGeometry& g, const ConvSubsamplingOptions& options) {
  const std::int64_t kernel = options.pool_kernel;
  const std::int64_t stride = options.pool_stride == 0 ? kernel : options.pool_stride;
  const char* op = "conv2d_scaled_tanh_subsampling2d";
  if (kernel < 1) fail(op, "pool kernel must be >= 1, got " + std::to_string(kernel));
  if (stride < 0) fail(op, "pool stride must be >= 0 (0 = kernel), got " + std::to_string(stride));
  if (kernel > g.out_h || kernel > g.out_w)
    fail(op, "pool kernel " + std::to_string(kernel) + " is larger than the " +
                 std::to_string(g.out_h) + "x" + std::to_string(g.out_w) + " convolution output");
  if (options.tanh.amplitude == 0 || (options.tanh_after && options.tanh_after->amplitude == 0))
    fail(op, "amplitude must not be 0");
  return {.kernel = kernel,
          .stride = stride,
          .out_h = (g.out_h - kernel) / stride + 1,
          .out_w = (g.out_w - kernel) / stride + 1,
          .amplitude = options.tanh.amplitude,
          .slope = options.tanh.slope};
}

void check_per_channel(const Variable& v, const char* what, const ConvGeometry& g, DType dtype) {
  const char* op = "conv2d_scaled_tanh_subsampling2d";
  if (v.shape().size() != 1 || v.shape()[0] != g.out_channels)
    fail(op, std::string(what) + " must be [" + std::to_string(g.out_channels) + "], got " +
                 shape_str(v.shape()));
  if (v.dtype() != dtype)
    fail(op, std::string(what) + " is " + std::string(dtype_name(v.dtype())) + " but x is " +
                 std::string(dtype_name(dtype)));
}

// sums:[Ph, Pw] = the window sums of one plane of the conv output a:[Ho, Wo], each in row-major
// order (as subsampling2d adds them).
template <class T>
void window_sums(const ConvGeometry& g, const Subsampling& s, const T* a, T* sums) {
  for (std::int64_t i = 0; i < s.out_h; ++i, sums += s.out_w) {
    if (s.kernel == 2 && s.stride == 2) {  // a loop the compiler vectorises
      const T* top = a + 2 * i * g.out_w;
      const T* bottom = top + g.out_w;
      for (std::int64_t j = 0; j < s.out_w; ++j)
        sums[j] = ((top[2 * j] + top[2 * j + 1]) + bottom[2 * j]) + bottom[2 * j + 1];
      continue;
    }
    for (std::int64_t j = 0; j < s.out_w; ++j) {
      T sum = 0;
      for (std::int64_t p = 0; p < s.kernel; ++p)
        for (std::int64_t q = 0; q < s.kernel; ++q)
          sum += a[(i * s.stride + p) * g.out_w + (j * s.stride + q)];
      sums[j] = sum;
    }
  }
}

// out[k] = amplitude tanh(slope in[k]) for k < n, with scaled_tanh's roundings (in may be out).
template <class T>
void apply_scaled_tanh(const ScaledTanhOptions& tanh, const T* in, std::int64_t n, T* out) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  Eigen::Map<Array>(out, n) = T(tanh.amplitude) * (Eigen::Map<const Array>(in, n) * T(tanh.slope)).tanh();
}

// The step back through a scaled tanh from its values y: out[k] = t[k] (ratio (square - y[k]^2)),
// that slope squared when `squared` (t may be out), k < n.
template <class T>
void times_tanh_slope(const ScaledTanhOptions& tanh, bool squared, const T* y, const T* t,
                      std::int64_t n, T* out) {
  const T ratio = T(tanh.slope / tanh.amplitude), square = T(tanh.amplitude * tanh.amplitude);
  for (std::int64_t k = 0; k < n; ++k) {
    const T slope = ratio * (square - y[k] * y[k]);
    out[k] = t[k] * (squared ? slope * slope : slope);
  }
}

// One image: a = amplitude tanh(slope z), with scaled_tanh's roundings; then y = pool_weight
// (window sums of a) + pool_bias, by the vectorised kernels of `isa` for 2x2 windows tiling the
// conv output, else plain loops.
// z, a:[Cout, Ho, Wo]  pool_weight, pool_bias:[Cout] (pool_bias may be null) -> y:[Cout, Ph, Pw]
template <class T>
void activate_and_subsample(const ConvGeometry& g, const Subsampling& s, kernels::Isa isa,
                            const T* z, const T* pool_weight, const T* pool_bias, T* a, T* y) {
  const std::int64_t plane = g.out_h * g.out_w, windows = s.out_h * s.out_w;
  apply_scaled_tanh<T>({.amplitude = s.amplitude, .slope = s.slope}, z, g.out_channels * plane, a);
  if constexpr (std::is_same_v<T, float>)
    if (s.tiles_2x2(g) && kernels::subsample_2x2(isa, g.out_channels, g.out_h, g.out_w, a,
                                                  pool_weight, pool_bias, y))
      return;
  for (std::int64_t o = 0; o < g.out_channels; ++o, y += windows) {
    window_sums(g, s, a + o * plane, y);
    const T weight = pool_weight[o], bias = pool_bias ? pool_bias[o] : T(0);
    for (std::int64_t k = 0; k < windows; ++k) y[k] = weight * y[k] + bias;
  }
}

// One image's step back through the subsampling and the scaled tanh, given t:[Cout, Ph, Pw]
// (dy, or the curvature h with every factor squared):
//   dz = (t scale[c] on every element of its window) (slope / amplitude)(amplitude^2 - a^2)
// (that slope squared when `squared`; scale = pool_weight, or its square) into dz:[Cout, Ho, Wo]
// (0 where no window reaches; null: not wanted), and adds to the sums of the gradients wanted
// (null where not): grad_b (of the convolution's bias) sum of dz, grad_pool_weight sum of t
// (window sum of a, or its square), grad_pool_bias sum of t. By the vectorised kernels of `isa`
// for 2x2 windows tiling the conv output, else plain loops; `sums` is their scratch, Ph Pw values.
template <class T>
void subsampling_adjoint(const ConvGeometry& g, const Subsampling& s, kernels::Isa isa,
                         const T* t, const T* a, const T* scale, bool squared, T* dz, T* grad_b,
                         T* grad_pool_weight, T* grad_pool_bias, T* sums) {
  const T ratio = T(s.slope / s.amplitude), square = T(s.amplitude * s.amplitude);
  if constexpr (std::is_same_v<T, float>)
    if (s.tiles_2x2(g) &&
        kernels::subsample_2x2_adjoint(isa, g.out_channels, g.out_h, g.out_w, t, a, scale,
                                       {.ratio = ratio, .square = square}, squared, dz, grad_b,
                                       grad_pool_weight, grad_pool_bias))
      return;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const auto slope = [&](T a) {
    const T value = ratio * (square - a * a);
    return squared ? value * value : value;
  };
  const std::int64_t plane = g.out_h * g.out_w, windows = s.out_h * s.out_w;
  for (std::int64_t o = 0; o < g.out_channels; ++o) {
    const T* a_o = a + o * plane;
    const T* t_o = t + o * windows;
    const Eigen::Map<const Array> t_map(t_o, windows);
    if (grad_pool_bias) grad_pool_bias[o] += t_map.sum();
    if (grad_pool_weight) {
      window_sums(g, s, a_o, sums);
      const Eigen::Map<const Array> sums_map(sums, windows);
      grad_pool_weight[o] += squared ? (t_map * sums_map.square()).sum() : (t_map * sums_map).sum();
    }
    if (!dz) continue;
    T* dz_o = dz + o * plane;
    std::fill(dz_o, dz_o + plane, T(0));
    for (std::int64_t i = 0; i < s.out_h; ++i)
      for (std::int64_t j = 0; j < s.out_w; ++j) {
        const T share = t_o[i * s.out_w + j] * scale[o];
        for (std::int64_t p = 0; p < s.kernel; ++p) {
          T* row = dz_o + (i * s.stride + p) * g.out_w + j * s.stride;
          for (std::int64_t q = 0; q < s.kernel; ++q) row[q] += share;
        }
      }
    for (std::int64_t k = 0; k < plane; ++k) dz_o[k] *= slope(a_o[k]);
    if (grad_b) grad_b[o] += Eigen::Map<const Array>(dz_o, plane).sum();
  }
}

// The forward of a float32 batch in blocks of L images, each image in a lane (kernels::
// LaneConvolution): the same steps as the per-image loop, on every image of a block at once.
// a:[blocks][Cout][Ho][Wo][L] is kept when given (else scratch); y:[N, Cout, Ph, Pw].
void forward_in_lanes(kernels::LaneConvolution& lanes, const ConvGeometry& g, const Subsampling& s,
                      const std::optional<ScaledTanhOptions>& tanh_after, const float* x,
                      const float* b, const float* pool_weight, const float* pool_bias, float* a,
                      float* y) {
  const std::int64_t L = lanes.lanes();
  const std::int64_t block_values = g.out_channels * g.out_h * g.out_w * L;
  const std::int64_t pooled = g.out_channels * s.out_h * s.out_w;
  const auto x_lanes = make_cached_array<float>(static_cast<std::size_t>(g.image_size() * L));
  const auto y_lanes = make_cached_array<float>(static_cast<std::size_t>(pooled * L));
  const auto scratch =
      a ? nullptr : make_cached_array<float>(static_cast<std::size_t>(block_values));
  for (std::int64_t n0 = 0; n0 < g.batch; n0 += L) {
    const std::int64_t count = std::min(L, g.batch - n0);
    lanes.to_lanes(x + n0 * g.image_size(), count, g.image_size(), x_lanes.get());
    float* a_block = a ? a + n0 / L * block_values : scratch.get();
    lanes.forward(x_lanes.get(), b, a_block);
    apply_scaled_tanh<float>({.amplitude = s.amplitude, .slope = s.slope}, a_block, block_values,
                             a_block);
    lanes.subsample(a_block, pool_weight, pool_bias, y_lanes.get());
    if (tanh_after) apply_scaled_tanh(*tanh_after, y_lanes.get(), pooled * L, y_lanes.get());
    lanes.to_images(y_lanes.get(), count, pooled, y + n0 * pooled);
  }
}

// The adjoint of the chain for a float32 batch whose forward ran in lanes, given t:[N, Cout, Ph,
// Pw] (dy, or the curvature h with every factor squared), y (with tanh_after), a as
// forward_in_lanes kept it, x (for dw, squared here for the curvature) and the scale below the
// pool (null: nothing below the pool is wanted). Writes dx (null: not wanted), adds to dw and the
// sums (null where not wanted).
void adjoint_in_lanes(kernels::LaneConvolution& lanes, const ConvGeometry& g, const Subsampling& s,
                      const std::optional<ScaledTanhOptions>& tanh_after, bool squared,
                      const float* t, const float* y, const float* a, const float* x,
                      const float* scale, float* dx, float* dw, float* grad_b,
                      float* grad_pool_weight, float* grad_pool_bias) {
  const std::int64_t L = lanes.lanes();
  const std::int64_t block_values = g.out_channels * g.out_h * g.out_w * L;
  const std::int64_t pooled = g.out_channels * s.out_h * s.out_w;
  const auto t_lanes = make_cached_array<float>(static_cast<std::size_t>(pooled * L));
  const auto y_lanes =
      tanh_after ? make_cached_array<float>(static_cast<std::size_t>(pooled * L)) : nullptr;
  const auto image_lanes =
      dw || dx ? make_cached_array<float>(static_cast<std::size_t>(g.image_size() * L)) : nullptr;
  const kernels::SlopeOfScaledTanh slope{.ratio = float(s.slope / s.amplitude),
                                         .square = float(s.amplitude * s.amplitude)};
  for (std::int64_t n0 = 0; n0 < g.batch; n0 += L) {
    const std::int64_t count = std::min(L, g.batch - n0);
    lanes.to_lanes(t + n0 * pooled, count, pooled, t_lanes.get());
    if (tanh_after) {  // through the tanh after the subsampling first
      lanes.to_lanes(y + n0 * pooled, count, pooled, y_lanes.get());
      times_tanh_slope(*tanh_after, squared, y_lanes.get(), t_lanes.get(), pooled * L,
                       t_lanes.get());
    }
    lanes.subsample_adjoint(t_lanes.get(), a + n0 / L * block_values, scale, slope, squared,
                            grad_b, grad_pool_weight, grad_pool_bias);
    if (dw) {
      lanes.to_lanes(x + n0 * g.image_size(), count, g.image_size(), image_lanes.get());
      if (squared)
        for (std::int64_t k = 0; k < g.image_size() * L; ++k) image_lanes[k] *= image_lanes[k];
      lanes.add_grad_w(image_lanes.get());
    }
    if (dx) {
      lanes.grad_x(image_lanes.get());
      lanes.to_images(image_lanes.get(), count, g.image_size(), dx + n0 * g.image_size());
    }
  }
  if (dw) lanes.finish_grad_w(dw);
}

}  // namespace

Variable conv2d_scaled_tanh_subsampling2d(const Variable& x, const Variable& w, const Variable& b,
                                          const Variable& pool_weight, const Variable& pool_bias,
                                          const ConvSubsamplingOptions& options) {
  // x:[N,Cin,H,W]  w:[Cout,Cin,KH,KW]  b:[Cout]  pool_weight, pool_bias:[Cout] -> y:[N,Cout,Ph,Pw]
  const ConvGeometry g = conv_geometry(x, w, b, options.stride, options.padding);
  check_connections(w, options.connections);
  const ConnectionTable connections = options.connections;
  const Subsampling s = subsampling_geometry(g, options);
  const char* op = "conv2d_scaled_tanh_subsampling2d";
  if (!pool_weight.defined()) fail(op, "pool weight must be defined");
  check_per_channel(pool_weight, "pool weight", g, x.dtype());
  const bool has_bias = b.defined(), has_pool_bias = pool_bias.defined();
  if (has_pool_bias) check_per_channel(pool_bias, "pool bias", g, x.dtype());

  // Inputs: x, w, [b], pool_weight, [pool_bias].
  VariableList inputs{x, w};
  if (has_bias) inputs.push_back(b);
  const std::size_t pool_weight_input = inputs.size();
  inputs.push_back(pool_weight);
  if (has_pool_bias) inputs.push_back(pool_bias);
  const bool save = needs_grad(inputs);

  // A float32 batch of at least a register's lanes of images runs a block of images at once, an
  // image in each lane, where the pairs off the connection table cost nothing; smaller batches and
  // float64 one image at a time.
  const Tensor weights = connections.connected(w.value());
  std::shared_ptr<kernels::LaneConvolution> lanes;
  if (x.dtype() == DType::Float32 && s.tiles_2x2(g) && kernels::widest_isa() != kernels::Isa::Plain)
    lanes = kernels::lane_convolution(kernels::widest_isa(), g, weights.data<float>(), connections);
  if (lanes && g.batch < lanes->lanes()) lanes = nullptr;
  const kernels::Isa lanes_isa = lanes ? lanes->isa() : kernels::Isa::Plain;

  // Saved for backward, and only when a gradient is wanted: a = the scaled tanh of the
  // convolution, every element of it (the subsampling's sums and the tanh's slope); in lanes,
  // a:[blocks][Cout][Ho][Wo][lanes].
  const std::int64_t plane = g.out_h * g.out_w;
  Tensor a;
  if (save && lanes)
    a = Tensor::empty({(g.batch + lanes->lanes() - 1) / lanes->lanes(), g.out_channels, g.out_h,
                       g.out_w, lanes->lanes()},
                      x.dtype());
  else if (save)
    a = Tensor::empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.dtype());
  Tensor y = Tensor::empty({g.batch, g.out_channels, s.out_h, s.out_w}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    if constexpr (std::is_same_v<T, float>)
      if (lanes) {
        forward_in_lanes(*lanes, g, s, options.tanh_after, x.value().data<float>(),
                         has_bias ? b.value().data<float>() : nullptr,
                         pool_weight.value().data<float>(),
                         has_pool_bias ? pool_bias.value().data<float>() : nullptr,
                         save ? a.data<float>() : nullptr, y.data<float>());
        return;
      }
    const auto convolution = kernels::direct_convolution<T>(g, weights.template data<T>());
    const std::size_t image_values = static_cast<std::size_t>(g.out_channels * plane);
    const std::shared_ptr<T[]> z = make_cached_array<T>(image_values);
    const std::shared_ptr<T[]> scratch = save ? nullptr : make_cached_array<T>(image_values);
    const T* x_data = x.value().template data<T>();
    const T* b_data = has_bias ? b.value().template data<T>() : nullptr;
    const T* pool_bias_data = has_pool_bias ? pool_bias.value().template data<T>() : nullptr;
    const std::int64_t pooled = g.out_channels * s.out_h * s.out_w;
    for (std::int64_t n = 0; n < g.batch; ++n) {
      convolution->forward(x_data + n * g.image_size(), b_data, z.get());
      T* y_n = y.data<T>() + n * pooled;
      activate_and_subsample(g, s, convolution->isa(), z.get(),
                             pool_weight.value().template data<T>(), pool_bias_data,
                             save ? a.data<T>() + n * g.out_channels * plane : scratch.get(), y_n);
      if (options.tanh_after) apply_scaled_tanh(*options.tanh_after, y_n, pooled, y_n);
    }
  });

  const OpName name = options.tanh_after ? OpName("conv2d+scaled_tanh+subsampling2d+scaled_tanh")
                                         : OpName("conv2d+scaled_tanh+subsampling2d");
  if (!save) return record(std::move(y), name, std::move(inputs), nullptr);
  // With the tanh after: y, for its slope (shared with the result).
  const SavedTensor saved_y =
      options.tanh_after ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  const std::optional<ScaledTanhOptions> tanh_after = options.tanh_after;
  // x is read only for grad_w, w only for grad_x, pool_weight for anything below the pool.
  const bool conv_gradients = needs_grad({x, w, b});
  const SavedTensor saved_x =
      w.requires_grad() ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_w =
      x.requires_grad() ? SavedTensor(w.value(), /*input=*/1) : SavedTensor{};
  const SavedTensor saved_pool_weight =
      conv_gradients
          ? SavedTensor(pool_weight.value(), static_cast<int>(pool_weight_input))
          : SavedTensor{};
  // The adjoint of the chain applied to t: the backward is adjoint(dy), the curvature rule
  // adjoint(h) with every factor squared (the convolution and the subsampling are linear in each
  // input, the tanh is taken by its slope alone: Gauss-Newton).
  auto adjoint = [g, s, has_bias, has_pool_bias, pool_weight_input, a, saved_x, saved_w,
                  saved_pool_weight, saved_y, tanh_after, connections,
                  lanes_isa](const Tensor& t, bool squared, const GradMask& needs) {
    const bool want_x = needs[0], want_w = needs[1], want_b = has_bias && needs[2];
    const bool want_pool_weight = needs[pool_weight_input];
    const bool want_pool_bias = has_pool_bias && needs[pool_weight_input + 1];
    if ((want_x && !saved_w.defined()) || (want_w && !saved_x.defined()) ||
        ((want_x || want_w || want_b) && !saved_pool_weight.defined()))
      fail("conv2d_scaled_tanh_subsampling2d", "an input began requiring grad after the forward");
    TensorList grads(needs.size());
    const DType dtype = t.dtype();
    // grad_x is written whole, image by image; the others are sums.
    if (want_x) grads[0] = Tensor::empty({g.batch, g.in_channels, g.height, g.width}, dtype);
    if (want_w) grads[1] = Tensor({g.out_channels, g.in_channels, g.kernel_h, g.kernel_w}, dtype);
    if (want_b) grads[2] = Tensor({g.out_channels}, dtype);
    if (want_pool_weight) grads[pool_weight_input] = Tensor({g.out_channels}, dtype);
    if (want_pool_bias) grads[pool_weight_input + 1] = Tensor({g.out_channels}, dtype);
    const bool below_pool = want_x || want_w || want_b;
    dispatch(dtype, [&]<class T>() {
      const auto out = [](Tensor& v) { return v.defined() ? v.data<T>() : nullptr; };
      T* grad_b = want_b ? grads[2].data<T>() : nullptr;
      T* grad_pool_weight = out(grads[pool_weight_input]);
      T* grad_pool_bias = want_pool_bias ? grads[pool_weight_input + 1].data<T>() : nullptr;
      const std::int64_t plane = g.out_h * g.out_w;
      const std::size_t image_values = static_cast<std::size_t>(g.out_channels * plane);
      const auto square = [](const Tensor& v) {
        Tensor squared = Tensor::empty(v.shape(), v.dtype());
        using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
        Eigen::Map<Array>(squared.data<T>(), v.numel()) =
            Eigen::Map<const Array>(v.data<T>(), v.numel()).square();
        return squared;
      };
      // The convolution's weights, squared for the curvature; x is squared image by image.
      const Tensor weights =
          want_x ? (squared ? square(connections.connected(saved_w.unpack()))
                            : connections.connected(saved_w.unpack()))
                 : Tensor{};
      const Tensor images = want_w ? saved_x.unpack() : Tensor{};
      // The factor of each channel's window below the pool: pool_weight, squared for the curvature.
      const std::shared_ptr<T[]> scale =
          below_pool ? make_cached_array<T>(static_cast<std::size_t>(g.out_channels)) : nullptr;
      if (below_pool) {
        const T* pool_weight = saved_pool_weight.unpack().data<T>();
        for (std::int64_t o = 0; o < g.out_channels; ++o)
          scale[o] = squared ? pool_weight[o] * pool_weight[o] : pool_weight[o];
      }
      if constexpr (std::is_same_v<T, float>)
        if (a.shape().size() == 5) {  // the forward ran in lanes
          const auto lanes = kernels::lane_convolution(
              lanes_isa, g, want_x ? weights.data<float>() : nullptr, connections);
          adjoint_in_lanes(*lanes, g, s, tanh_after, squared, t.data<float>(),
                           tanh_after ? saved_y.unpack().data<float>() : nullptr, a.data<float>(),
                           want_w ? images.data<float>() : nullptr, scale.get(),
                           want_x ? grads[0].data<float>() : nullptr,
                           want_w ? grads[1].data<float>() : nullptr, grad_b, grad_pool_weight,
                           grad_pool_bias);
          if (want_w) connections.zero_unconnected(grads[1]);
          return;
        }
      const auto convolution =
          want_x || want_w
              ? kernels::direct_convolution<T>(g, want_x ? weights.data<T>() : nullptr)
              : nullptr;
      const kernels::Isa isa = convolution ? convolution->isa() : kernels::widest_isa();
      const std::shared_ptr<T[]> dz = below_pool ? make_cached_array<T>(image_values) : nullptr;
      const std::shared_ptr<T[]> sums =
          make_cached_array<T>(static_cast<std::size_t>(s.out_h * s.out_w));
      const std::shared_ptr<T[]> x_squared =
          want_w && squared ? make_cached_array<T>(static_cast<std::size_t>(g.image_size()))
                            : nullptr;
      // Through the tanh after the subsampling first: t (slope / amplitude)(amplitude^2 - y^2),
      // the slope squared for the curvature.
      const std::int64_t pooled = g.out_channels * s.out_h * s.out_w;
      const std::shared_ptr<T[]> t_pool =
          tanh_after ? make_cached_array<T>(static_cast<std::size_t>(pooled)) : nullptr;
      const T* y = tanh_after ? saved_y.unpack().data<T>() : nullptr;
      for (std::int64_t n = 0; n < g.batch; ++n) {
        const T* t_n = t.data<T>() + n * pooled;
        if (tanh_after) {
          times_tanh_slope(*tanh_after, squared, y + n * pooled, t_n, pooled, t_pool.get());
          t_n = t_pool.get();
        }
        subsampling_adjoint(g, s, isa, t_n,
                            a.data<T>() + n * g.out_channels * plane, scale.get(), squared,
                            dz.get(), grad_b, grad_pool_weight, grad_pool_bias, sums.get());
        if (want_w) {
          const T* x_n = images.data<T>() + n * g.image_size();
          if (squared) {
            std::transform(x_n, x_n + g.image_size(), x_squared.get(), [](T v) { return v * v; });
            x_n = x_squared.get();
          }
          convolution->add_grad_w(x_n, dz.get());
        }
        if (want_x) convolution->grad_x(dz.get(), grads[0].data<T>() + n * g.image_size());
      }
      if (want_w) {
        convolution->finish_grad_w(grads[1].data<T>());
        connections.zero_unconnected(grads[1]);
      }
    });
    return grads;
  };
  return record(
      std::move(y), name, std::move(inputs),
      [adjoint](const Tensor& dy, const GradMask& needs) {
        return adjoint(dy, /*squared=*/false, needs);
      },
      [adjoint](const Tensor& h, const Tensor&, const GradMask& needs) {
        return adjoint(h, /*squared=*/true, needs);
      });
}

}  // namespace ag
