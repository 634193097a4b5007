// 2-d convolution (cross-correlation, as PyTorch), NCHW.
#pragma once

#include <cstdint>

#include "autograd/variable.hpp"

namespace ag {

/// y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x_padded[n, c, i*stride + p, j*stride + q]
/// with zero padding; Ho = (H + 2 padding - KH) / stride + 1, likewise Wo.
/// x:[N, Cin, H, W]  w:[Cout, Cin, KH, KW]  b:[Cout] or undefined -> y:[N, Cout, Ho, Wo]
/// dx, dw, db are the adjoints of the same sums (col2im of w^T dy, dy x^T, sum of dy).
/// float32 or float64. Needs stride >= 1, padding >= 0, matching channels and a kernel no larger
/// than the padded input; otherwise throws std::invalid_argument("conv2d: ...") naming the shapes.
Variable conv2d(const Variable& x, const Variable& w, const Variable& b = {},
                std::int64_t stride = 1, std::int64_t padding = 0);

}  // namespace ag
