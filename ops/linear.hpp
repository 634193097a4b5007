// Matrix products (GEMMs of ops/kernels/gemm.hpp).
#pragma once

#include "autograd/variable.hpp"

namespace ag {

// Both ops compute only the gradients the backward's `needs` asks for, and save only the operand
// each of those needs (b for da, a for db).

/// y = a b;  da = dy b^T,  db = a^T dy.   a:[M, K]  b:[K, N] -> y:[M, N], same dtype.
Variable matmul(const Variable& a, const Variable& b);

/// y = x w^T + b (PyTorch's layout);  dx = dy w,  dw = dy^T x,  db = sum_n dy.
/// x:[N, in]  w:[out, in]  b:[out] or undefined -> y:[N, out], same dtype.
Variable linear(const Variable& x, const Variable& w, const Variable& b = {});

}  // namespace ag
