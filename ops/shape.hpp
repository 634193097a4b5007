// Shape ops: views that share storage with their input.
#pragma once

#include <cstdint>

#include "autograd/variable.hpp"

namespace ag {

/// Same elements, another shape (one dimension may be -1);  dx = dy reshaped back.
Variable reshape(const Variable& x, Shape shape);

/// Collapses dimensions start_dim.. into one: [N, C, H, W] -> [N, C*H*W] for start_dim = 1;
/// start_dim may be negative. A reshape underneath (it appears as "reshape" in the graph).
Variable flatten(const Variable& x, std::int64_t start_dim = 1);

}  // namespace ag
