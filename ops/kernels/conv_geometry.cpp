// conv2d's argument checks and output sizes.
#include "ops/kernels/conv_geometry.hpp"

#include <limits>
#include <string>

namespace ag {

ConvGeometry conv_geometry(const Variable& x, const Variable& w, const Variable& b,
                           std::int64_t stride, std::int64_t padding) {
  if (!x.defined() || !w.defined()) fail("conv2d", "x and w must be defined");
  // Messages are built only on failure: this runs on every call of the op.
  const auto xs = [&] { return shape_str(x.shape()); };
  const auto ws = [&] { return shape_str(w.shape()); };
  if (x.shape().size() != 4) fail("conv2d", "expected x of shape [N, Cin, H, W], got " + xs());
  if (w.shape().size() != 4) fail("conv2d", "expected w of shape [Cout, Cin, KH, KW], got " + ws());
  if (x.shape()[1] != w.shape()[1])
    fail("conv2d", "x " + xs() + " has " + std::to_string(x.shape()[1]) + " channels but w " +
                       ws() + " expects " + std::to_string(w.shape()[1]));
  if (shape_numel(w.shape()) == 0) fail("conv2d", "w " + ws() + " is empty");
  if (b.defined() && (b.shape().size() != 1 || b.shape()[0] != w.shape()[0]))
    fail("conv2d", "bias of shape " + shape_str(b.shape()) + " does not match w " + ws() +
                       " (expected [" + std::to_string(w.shape()[0]) + "])");
  const auto x_dtype = [&] { return std::string(dtype_name(x.dtype())); };
  if (w.dtype() != x.dtype())
    fail("conv2d", "x " + xs() + " is " + x_dtype() + " but w " + ws() + " is " +
                       std::string(dtype_name(w.dtype())));
  if (b.defined() && b.dtype() != x.dtype())
    fail("conv2d", "x " + xs() + " is " + x_dtype() + " but b " + shape_str(b.shape()) + " is " +
                       std::string(dtype_name(b.dtype())));
  if (stride < 1) fail("conv2d", "stride must be >= 1, got " + std::to_string(stride));
  if (padding < 0) fail("conv2d", "padding must be >= 0, got " + std::to_string(padding));

  ConvGeometry g{};
  g.batch = x.shape()[0], g.in_channels = x.shape()[1];
  g.height = x.shape()[2], g.width = x.shape()[3];
  g.out_channels = w.shape()[0], g.kernel_h = w.shape()[2], g.kernel_w = w.shape()[3];
  g.stride = stride, g.padding = padding;
  if (g.kernel_h > g.height + 2 * padding || g.kernel_w > g.width + 2 * padding)
    fail("conv2d", "kernel of w " + ws() + " is larger than x " + xs() + " padded by " +
                       std::to_string(padding));
  g.out_h = (g.height + 2 * padding - g.kernel_h) / stride + 1;
  g.out_w = (g.width + 2 * padding - g.kernel_w) / stride + 1;
  // Refused before anything is allocated: an image's column matrix [K, P] or output planes
  // [Cout, P] of 2^31 elements or more (8 GiB in float32) is no convolution this library is for.
  constexpr std::int64_t int_max = std::numeric_limits<int>::max();
  if (g.patch() * g.pixels() > int_max || g.out_channels * g.pixels() > int_max)
    fail("conv2d",
         "x " + xs() + " with w " + ws() + " is too large (2^31 or more elements per image)");
  return g;
}

void check_connections(const Variable& w, const ConnectionTable& connections) {
  // A w of another rank is conv_geometry's to name.
  if (connections.all() || w.shape().size() != 4) return;
  if (connections.out_channels() != w.shape()[0] || connections.in_channels() != w.shape()[1])
    fail("conv2d", "connection table of " + std::to_string(connections.out_channels()) + " x " +
                       std::to_string(connections.in_channels()) + " channels does not match w " +
                       shape_str(w.shape()));
}

}  // namespace ag
