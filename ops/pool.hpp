// Pooling, NCHW.
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

}  // namespace ag
