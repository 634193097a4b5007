// Pooling, NCHW: max, average, and LeCun's trainable subsampling.
#pragma once

#include <cstdint>

#include "autograd/variable.hpp"

namespace ag {

/// y[n, c, i, j] = max over the kernel x kernel window at (i*stride, j*stride); no padding,
/// Ho = (H - kernel) / stride + 1. The whole gradient of a window goes to one maximum: the first
/// in row-major order when several tie, as PyTorch does.
/// x:[N, C, H, W] -> y:[N, C, Ho, Wo];  stride 0 means stride = kernel.
/// Throws std::invalid_argument("max_pool2d: ...") for a non-4-d x or a kernel larger than H or W.
Variable max_pool2d(const Variable& x, std::int64_t kernel, std::int64_t stride = 0);

/// y[n, c, i, j] = mean of the kernel x kernel window at (i*stride, j*stride); no padding,
/// Ho = (H - kernel) / stride + 1 (PyTorch's avg_pool2d with ceil_mode false).
/// dx: each window spreads dy / kernel^2 over its elements, summed where windows overlap.
/// x:[N, C, H, W] -> y:[N, C, Ho, Wo];  stride 0 means stride = kernel.
/// Throws std::invalid_argument("avg_pool2d: ...") for a non-4-d x or a kernel larger than H or W.
Variable avg_pool2d(const Variable& x, std::int64_t kernel, std::int64_t stride = 0);

/// LeCun et al.'s subsampling layer (S2 and S4 of the 1998 LeNet-5; Torch7's SpatialSubSampling):
///   y[n, c, i, j] = weight[c] * (sum of the kernel x kernel window of x[n, c] at (i*stride, j*stride))
///                   + bias[c]
/// no padding, Ho = (H - kernel) / stride + 1, likewise Wo; stride 0 means stride = kernel.
///   dx: each window spreads dy * weight[c] over its elements (summed where windows overlap);
///   dweight[c] = sum of dy * its window's sum;  dbias[c] = sum of dy.
/// x:[N, C, H, W]  weight:[C]  bias:[C] or undefined -> y:[N, C, Ho, Wo]
/// Throws std::invalid_argument("subsampling2d: ...") for the shapes avg_pool2d refuses, and for a
/// weight or bias that is not [C].
Variable subsampling2d(const Variable& x, const Variable& weight, const Variable& bias,
                       std::int64_t kernel, std::int64_t stride = 0);

}  // namespace ag
