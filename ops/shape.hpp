// Shape ops: reshape and flatten (views that share storage with their input), cat and transpose
// (copies: tensors are always contiguous).
#pragma once

#include <cstdint>

#include "autograd/variable.hpp"

namespace ag {

/// Same elements, another shape (one dimension may be -1);  dx = dy reshaped back.
Variable reshape(const Variable& x, Shape shape);

/// Collapses dimensions start_dim.. into one: [N, C, H, W] -> [N, C*H*W] for start_dim = 1;
/// start_dim may be negative. A reshape underneath (it appears as "reshape" in the graph).
Variable flatten(const Variable& x, std::int64_t start_dim = 1);

/// Joins xs along `dim` into a new tensor: y = [x_0, x_1, ...] along dim;  dx_i = the slice of dy
/// that x_i fills.  xs:[.., S_i, ..] (at least one; same rank, dtype and sizes except along dim)
/// -> y:[.., sum_i S_i, ..];  dim may be negative. Throws naming cat and the shapes.
Variable cat(const VariableList& xs, std::int64_t dim);

/// Swaps dimensions dim0 and dim1 into a new contiguous tensor;  dx = dy with the two swapped
/// back.  x:[.., A, .., B, ..] -> y:[.., B, .., A, ..];  dims may be negative; a 0-d x takes 0 and
/// -1 (as in PyTorch).
Variable transpose(const Variable& x, std::int64_t dim0, std::int64_t dim1);

/// y = x surrounded by `padding` rows and columns of the constant `value` on every side (PyTorch's
/// F.pad(x, (p, p, p, p), value=value));  dx = the middle of dy.
/// x:[N, C, H, W] -> y:[N, C, H + 2 padding, W + 2 padding];  padding >= 0.
Variable pad2d(const Variable& x, std::int64_t padding, double value = 0.0);

}  // namespace ag
