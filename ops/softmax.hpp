// Softmax family.
#pragma once

#include <cstdint>

#include "autograd/variable.hpp"

namespace ag {

/// y = exp(x - max(x)) / sum(exp(x - max(x))) along `dim` (numerically stable);
/// dx = y * (dy - sum(dy * y)) along dim.  Shapes: any -> same; dim may be negative. A 0-d x
/// takes dim 0 or -1 (as in PyTorch) and gives 1, with gradient 0.
Variable softmax(const Variable& x, std::int64_t dim);

/// y = x - max(x) - log(sum(exp(x - max(x)))) along `dim` (numerically stable);
/// dx = dy - softmax(x) * sum(dy) along dim.  Shapes: any -> same; dim may be negative. A 0-d x
/// takes dim 0 or -1 (as in PyTorch) and gives 0, with gradient 0.
Variable log_softmax(const Variable& x, std::int64_t dim);

}  // namespace ag
