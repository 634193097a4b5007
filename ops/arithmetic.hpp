// Element-wise arithmetic with NumPy/PyTorch broadcasting, and reductions.
#pragma once

#include "autograd/variable.hpp"

namespace ag {

/// y = a + b, broadcasting as PyTorch does: shapes are aligned from the right and a missing or
/// size-1 dimension stretches ([N, C] + [C], [N, C, H, W] + [C, 1, 1]).
/// da = sum of dy over a's broadcast dimensions, likewise db.
/// a and b must share a dtype; otherwise, or if the shapes do not broadcast, throws naming the op.
Variable add(const Variable& a, const Variable& b);

/// y = a * b element-wise, broadcasting as add.  da = dy * b,  db = dy * a (each reduced).
Variable mul(const Variable& a, const Variable& b);

/// y = sum of all elements, shape [] (accumulated in double).  dx = dy broadcast to x's shape.
Variable sum(const Variable& x);

/// y = mean of all elements, shape [].  dx = dy / numel broadcast to x's shape.  x nonempty.
Variable mean(const Variable& x);

/// The broadcast result shape of a and b; throws naming `op` and both shapes if they do not fit.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);

}  // namespace ag
