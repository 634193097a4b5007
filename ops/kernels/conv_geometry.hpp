// The sizes of one 2-d convolution, checked once, shared by conv2d and the fused convolution
// kernels.
#pragma once

#include <cstdint>

#include "autograd/variable.hpp"
#include "ops/conv2d.hpp"

namespace ag {

// Named once (like llm.c's B, T, C).
struct ConvGeometry {
  std::int64_t batch, in_channels, height, width;  // x:[N, Cin, H, W]
  std::int64_t out_channels, kernel_h, kernel_w;   // w:[Cout, Cin, KH, KW]
  std::int64_t out_h, out_w;                       // y:[N, Cout, Ho, Wo]
  std::int64_t stride, padding;
  std::int64_t patch() const { return in_channels * kernel_h * kernel_w; }  // K, rows of cols
  std::int64_t pixels() const { return out_h * out_w; }                     // P, columns of cols
  std::int64_t image_size() const { return in_channels * height * width; }
};

/// Validates conv2d's arguments (messages name "conv2d" and the shapes) and returns the geometry.
/// Works on deferred Variables too: it reads only shapes and dtypes.
ConvGeometry conv_geometry(const Variable& x, const Variable& w, const Variable& b,
                           std::int64_t stride, std::int64_t padding);

/// Checks that a connection table (other than `all`) is [Cout, Cin] for w:[Cout, Cin, KH, KW].
void check_connections(const Variable& w, const ConnectionTable& connections);

}  // namespace ag
