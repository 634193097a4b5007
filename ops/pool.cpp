// max_pool2d: forward records each window's argmax; backward scatters dy onto those positions.
#include "ops/pool.hpp"

#include "ops/fused.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ag {

Variable max_pool2d(const Variable& x, std::int64_t kernel, std::int64_t stride) {
  // x:[N,C,H,W] -> y:[N,C,Ho,Wo],  Ho = (H - kernel) / stride + 1, likewise Wo.
  if (!x.defined()) fail("max_pool2d", "x must be defined");
  const auto xs = [&] { return shape_str(x.shape()); };  // built only on failure
  if (x.shape().size() != 4) fail("max_pool2d", "expected x of shape [N, C, H, W], got " + xs());
  if (kernel < 1) fail("max_pool2d", "kernel must be >= 1, got " + std::to_string(kernel));
  if (stride < 0)
    fail("max_pool2d", "stride must be >= 0 (0 = kernel), got " + std::to_string(stride));
  if (stride == 0) stride = kernel;
  const std::int64_t planes = x.shape()[0] * x.shape()[1], height = x.shape()[2],
                     width = x.shape()[3];
  if (kernel > height || kernel > width)
    fail("max_pool2d", "kernel " + std::to_string(kernel) + " is larger than x " + xs());
  if (height * width > std::numeric_limits<std::int32_t>::max())
    fail("max_pool2d", "x " + xs() + " has planes too large for int32 argmax indices");
  // Over a deferred conv2d (and relu): one fused kernel instead (ops/fused.hpp).
  if (Variable fused = fuse_max_pool2d(x, kernel, stride); fused.defined()) return fused;
  const std::int64_t out_h = (height - kernel) / stride + 1, out_w = (width - kernel) / stride + 1;
  const std::int64_t plane_in = height * width, plane_out = out_h * out_w;

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
  return record(std::move(y), "max_pool2d", {x},
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
  });
}

}  // namespace ag
