// Pooling: max_pool2d records each window's argmax and its backward scatters dy onto those
// positions; avg_pool2d saves nothing and its backward spreads dy evenly over each window.
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

}  // namespace ag
