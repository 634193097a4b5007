// Pooling: max_pool2d records each window's argmax and its backward scatters dy onto those
// positions; avg_pool2d saves nothing and its backward spreads dy evenly over each window;
// subsampling2d scales each window's sum by a weight per channel and adds a bias per channel.
#include "ops/pool.hpp"

#include "ops/fusion/fusion.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace ag {

namespace {

// x:[N, C, H, W] seen as planes = N * C images of height x width, pooled by kernel x kernel
// windows every `stride` (never 0 here) into out_h x out_w.
struct PoolGeometry {
  std::int64_t planes, height, width, kernel, stride, out_h, out_w;
};

// Checks x, kernel and stride for `op`; stride 0 means stride = kernel.
PoolGeometry pool_geometry(std::string_view op, const Variable& x, std::int64_t kernel,
                           std::int64_t stride) {
  if (!x.defined()) fail(op, "x must be defined");
  const auto xs = [&] { return shape_str(x.shape()); };  // built only on failure
  if (x.shape().size() != 4) fail(op, "expected x of shape [N, C, H, W], got " + xs());
  if (kernel < 1) fail(op, "kernel must be >= 1, got " + std::to_string(kernel));
  if (stride < 0) fail(op, "stride must be >= 0 (0 = kernel), got " + std::to_string(stride));
  if (stride == 0) stride = kernel;
  const std::int64_t height = x.shape()[2], width = x.shape()[3];
  if (kernel > height || kernel > width)
    fail(op, "kernel " + std::to_string(kernel) + " is larger than x " + xs());
  return {.planes = x.shape()[0] * x.shape()[1],
          .height = height,
          .width = width,
          .kernel = kernel,
          .stride = stride,
          .out_h = (height - kernel) / stride + 1,
          .out_w = (width - kernel) / stride + 1};
}

}  // namespace

Variable max_pool2d(const Variable& x, std::int64_t kernel, std::int64_t stride) {
  // x:[N,C,H,W] -> y:[N,C,Ho,Wo],  Ho = (H - kernel) / stride + 1, likewise Wo.
  const PoolGeometry g = pool_geometry("max_pool2d", x, kernel, stride);
  stride = g.stride;  // 0 resolved to kernel
  const std::int64_t planes = g.planes, width = g.width, out_h = g.out_h, out_w = g.out_w;
  const std::int64_t plane_in = g.height * width, plane_out = out_h * out_w;
  if (plane_in > std::numeric_limits<std::int32_t>::max())
    fail("max_pool2d",
         "x " + shape_str(x.shape()) + " has planes too large for int32 argmax indices");
  // Over a deferred conv2d (and relu): one fused kernel instead (ops/fusion/fusion.hpp).
  if (Variable fused = fuse_max_pool2d(x, kernel, stride); fused.defined()) return fused;

  // Saved for backward, and only when a gradient is wanted: for every output element, the flat
  // index (h * W + w) within its input plane of the window's first maximum.
  const bool save = needs_grad({x});
  std::vector<std::int32_t> argmax(save ? static_cast<std::size_t>(planes * plane_out) : 0);

  Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], out_h, out_w}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().template data<T>();
    T* y_data = y.data<T>();
    for (std::int64_t plane = 0; plane < planes; ++plane) {
      const T* in = x_data + plane * plane_in;
      for (std::int64_t i = 0; i < out_h; ++i)
        for (std::int64_t j = 0; j < out_w; ++j) {
          std::int64_t best = (i * stride) * width + j * stride;  // window's top-left
          for (std::int64_t p = 0; p < kernel; ++p)
            for (std::int64_t q = 0; q < kernel; ++q) {
              const std::int64_t at = (i * stride + p) * width + (j * stride + q);
              if (in[at] > in[best]) best = at;  // strict: ties keep the first (PyTorch's rule)
            }
          const std::int64_t out = plane * plane_out + i * out_w + j;
          y_data[out] = in[best];
          if (save) argmax[static_cast<std::size_t>(out)] = static_cast<std::int32_t>(best);
        }
    }
  });

  const Shape x_shape = x.shape();
  return with_attributes(record(std::move(y), "max_pool2d", {x},
                [argmax = std::move(argmax), x_shape, planes, plane_in, plane_out](
                    const Tensor& dy, const GradMask&) {
    // dx[argmax] += dy: overlapping windows (stride < kernel) may pick the same input.
    Tensor grad_x(x_shape, dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      const T* dy_data = dy.data<T>();
      T* dx_data = grad_x.data<T>();
      for (std::int64_t plane = 0; plane < planes; ++plane)
        for (std::int64_t out = plane * plane_out; out < (plane + 1) * plane_out; ++out)
          dx_data[plane * plane_in + argmax[static_cast<std::size_t>(out)]] += dy_data[out];
    });
    return TensorList{grad_x};
  }), [&] { return OpAttributes{{"kernel", kernel}, {"stride", stride}}; });
}

Variable avg_pool2d(const Variable& x, std::int64_t kernel, std::int64_t stride) {
  // x:[N,C,H,W] -> y:[N,C,Ho,Wo],  Ho = (H - kernel) / stride + 1, likewise Wo.
  const PoolGeometry g = pool_geometry("avg_pool2d", x, kernel, stride);
  const std::int64_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w;
  const std::int64_t area = kernel * kernel;  // every window lies inside x: no padding

  Tensor y = Tensor::empty({x.shape()[0], x.shape()[1], g.out_h, g.out_w}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().template data<T>();
    T* y_data = y.data<T>();
    for (std::int64_t plane = 0; plane < g.planes; ++plane) {
      const T* in = x_data + plane * plane_in;
      for (std::int64_t i = 0; i < g.out_h; ++i)
        for (std::int64_t j = 0; j < g.out_w; ++j) {
          T sum = 0;
          for (std::int64_t p = 0; p < kernel; ++p)
            for (std::int64_t q = 0; q < kernel; ++q)
              sum += in[(i * g.stride + p) * g.width + (j * g.stride + q)];
          y_data[plane * plane_out + i * g.out_w + j] = sum / static_cast<T>(area);
        }
    }
  });

  // Saves nothing but the geometry: the gradient does not depend on x.
  // Each window's value t / kernel^2 times `weight`, added to every element of the window: dx for
  // t = dy; overlapping windows (stride < kernel) add up.
  auto spread = [g, x_shape = x.shape(), plane_in, plane_out](const Tensor& t, double weight) {
    Tensor out(x_shape, t.dtype());
    dispatch(t.dtype(), [&]<class T>() {
      const T* t_data = t.data<T>();
      for (std::int64_t plane = 0; plane < g.planes; ++plane) {
        T* o = out.data<T>() + plane * plane_in;
        for (std::int64_t i = 0; i < g.out_h; ++i)
          for (std::int64_t j = 0; j < g.out_w; ++j) {
            const T share = t_data[plane * plane_out + i * g.out_w + j] * static_cast<T>(weight);
            for (std::int64_t p = 0; p < g.kernel; ++p)
              for (std::int64_t q = 0; q < g.kernel; ++q)
                o[(i * g.stride + p) * g.width + (j * g.stride + q)] += share;
          }
      }
    });
    return out;
  };
  const double inverse_area = 1.0 / static_cast<double>(area);
  return with_attributes(record(
      std::move(y), "avg_pool2d", {x},
      [spread, inverse_area](const Tensor& dy, const GradMask&) {
        return TensorList{spread(dy, inverse_area)};
      },
      // Curvature: dy/dx = 1 / kernel^2 for each window the element is in, squared.
      [spread, inverse_area](const Tensor& h, const Tensor&, const GradMask&) {
        return TensorList{spread(h, inverse_area * inverse_area)};
      }), [&] { return OpAttributes{{"kernel", kernel}, {"stride", g.stride}}; });
}

namespace {

// The sum of window (i, j) of a plane, its elements added in row-major order.
template <class T>
T window_sum(const PoolGeometry& g, const T* plane, std::int64_t i, std::int64_t j) {
  T sum = 0;
  for (std::int64_t p = 0; p < g.kernel; ++p)
    for (std::int64_t q = 0; q < g.kernel; ++q)
      sum += plane[(i * g.stride + p) * g.width + (j * g.stride + q)];
  return sum;
}

// Checks that v (named `what`) is a [channels] vector of x's dtype.
void check_per_channel(const Variable& v, const char* what, const Variable& x) {
  const std::int64_t channels = x.shape()[1];
  if (v.shape().size() != 1 || v.shape()[0] != channels)
    fail("subsampling2d", std::string(what) + " must be [" + std::to_string(channels) +
                              "] for x " + shape_str(x.shape()) + ", got " + shape_str(v.shape()));
  if (v.dtype() != x.dtype())
    fail("subsampling2d", std::string(what) + " is " + std::string(dtype_name(v.dtype())) +
                              " but x is " + std::string(dtype_name(x.dtype())));
}

}  // namespace

Variable subsampling2d(const Variable& x, const Variable& weight, const Variable& bias,
                       std::int64_t kernel, std::int64_t stride) {
  // x:[N,C,H,W]  weight:[C]  bias:[C] -> y:[N,C,Ho,Wo],  Ho = (H - kernel) / stride + 1, likewise Wo.
  const PoolGeometry g = pool_geometry("subsampling2d", x, kernel, stride);
  if (!weight.defined()) fail("subsampling2d", "weight must be defined");
  check_per_channel(weight, "weight", x);
  const bool has_bias = bias.defined();
  if (has_bias) check_per_channel(bias, "bias", x);
  // Over a deferred scaled tanh of a conv2d: one fused kernel instead (ops/fusion/fusion.hpp).
  if (Variable fused = fuse_subsampling2d(x, weight, bias, kernel, g.stride); fused.defined())
    return fused;
  const std::int64_t channels = x.shape()[1];
  const std::int64_t plane_in = g.height * g.width, plane_out = g.out_h * g.out_w;

  Tensor y = Tensor::empty({x.shape()[0], channels, g.out_h, g.out_w}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().template data<T>();
    const T* w = weight.value().template data<T>();
    const T* b = has_bias ? bias.value().template data<T>() : nullptr;
    T* y_data = y.data<T>();
    for (std::int64_t plane = 0; plane < g.planes; ++plane) {
      const std::int64_t c = plane % channels;
      for (std::int64_t i = 0; i < g.out_h; ++i)
        for (std::int64_t j = 0; j < g.out_w; ++j)
          y_data[plane * plane_out + i * g.out_w + j] =
              w[c] * window_sum(g, x_data + plane * plane_in, i, j) + (b ? b[c] : T(0));
    }
  });

  VariableList inputs{x, weight};
  if (has_bias) inputs.push_back(bias);
  if (!needs_grad(inputs)) return record(std::move(y), "subsampling2d", std::move(inputs), nullptr);
  // Saved for backward (shared, not copied): x for the weight's gradient (the window sums), the
  // weight for x's.
  const SavedTensor saved_x =
      weight.requires_grad() ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_w =
      x.requires_grad() ? SavedTensor(weight.value(), /*input=*/1) : SavedTensor{};
  // The adjoint applied to t: y is linear in x, in the weight and in the bias, so the backward is
  // adjoint(dy) and the curvature rule adjoint(h) with every factor squared:
  //   [0] x:[N, C, H, W]  each window spreads t * weight[c] (weight[c]^2) over its elements
  //   [1] weight:[C]      sum of t * window sum (window sum^2)
  //   [2] bias:[C]        sum of t
  auto adjoint = [g, channels, plane_in, plane_out, has_bias, x_shape = x.shape()](
                     const Tensor& t, const Tensor& x, const Tensor& w, bool squared,
                     const GradMask& needs) {
    TensorList results(has_bias ? 3 : 2);
    dispatch(t.dtype(), [&]<class T>() {
      const auto factor = [squared](T v) { return squared ? v * v : v; };
      const T* t_data = t.data<T>();
      if (needs[0]) {
        Tensor dx(x_shape, t.dtype());
        T* dx_data = dx.data<T>();
        const T* w_data = w.data<T>();
        for (std::int64_t plane = 0; plane < g.planes; ++plane) {
          T* out = dx_data + plane * plane_in;
          const T scale = factor(w_data[plane % channels]);
          for (std::int64_t i = 0; i < g.out_h; ++i)
            for (std::int64_t j = 0; j < g.out_w; ++j) {
              const T share = t_data[plane * plane_out + i * g.out_w + j] * scale;
              for (std::int64_t p = 0; p < g.kernel; ++p)
                for (std::int64_t q = 0; q < g.kernel; ++q)
                  out[(i * g.stride + p) * g.width + (j * g.stride + q)] += share;
            }
        }
        results[0] = dx;
      }
      if (needs[1]) {
        Tensor dw({channels}, t.dtype());
        T* dw_data = dw.data<T>();
        const T* x_data = x.data<T>();
        for (std::int64_t plane = 0; plane < g.planes; ++plane)
          for (std::int64_t i = 0; i < g.out_h; ++i)
            for (std::int64_t j = 0; j < g.out_w; ++j)
              dw_data[plane % channels] += t_data[plane * plane_out + i * g.out_w + j] *
                                           factor(window_sum(g, x_data + plane * plane_in, i, j));
        results[1] = dw;
      }
      if (has_bias && needs[2]) {
        Tensor db({channels}, t.dtype());
        T* db_data = db.data<T>();
        for (std::int64_t plane = 0; plane < g.planes; ++plane)
          for (std::int64_t k = 0; k < plane_out; ++k)
            db_data[plane % channels] += t_data[plane * plane_out + k];
        results[2] = db;
      }
    });
    return results;
  };
  return with_attributes(record(
      std::move(y), "subsampling2d", std::move(inputs),
      [saved_x, saved_w, adjoint](const Tensor& dy, const GradMask& needs) {
        if ((needs[0] && !saved_w.defined()) || (needs[1] && !saved_x.defined()))
          fail("subsampling2d", "an input began requiring grad after the forward");
        return adjoint(dy, needs[1] ? saved_x.unpack() : Tensor{},
                       needs[0] ? saved_w.unpack() : Tensor{}, /*squared=*/false, needs);
      },
      [saved_x, saved_w, adjoint](const Tensor& h, const Tensor&, const GradMask& needs) {
        return adjoint(h, needs[1] ? saved_x.unpack() : Tensor{},
                       needs[0] ? saved_w.unpack() : Tensor{}, /*squared=*/true, needs);
      }), [&] { return OpAttributes{{"kernel", kernel}, {"stride", g.stride}}; });
}

}  // namespace ag
