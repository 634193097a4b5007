// Reductions: sum and mean over all elements or over a list of dimensions, and logsumexp.
#pragma once

#include <cstdint>

#include "autograd/variable.hpp"

namespace ag {

/// The dimensions a reduction runs over, as PyTorch's `dim` argument: a negative one counts from
/// the end (-1 is the last). Written as a braced list: sum(x, {1, 2}, /*keepdim=*/true).
using DimList = SmallList<std::int64_t>;

/// y = sum of all elements, shape [] (accumulated in double).  dx = dy broadcast to x's shape.
Variable sum(const Variable& x);

/// y = mean of all elements, shape [].  dx = dy / numel broadcast to x's shape.  x nonempty.
Variable mean(const Variable& x);

/// y = x summed over `dims` (accumulated in double);  dx = dy copied back along the summed
/// dimensions.  Shapes: [2, 3, 4] over {1} -> [2, 4], or [2, 1, 4] with keepdim; an empty `dims`
/// sums over every dimension, as in PyTorch. A dim out of range or given twice throws naming the
/// op and x's shape.
Variable sum(const Variable& x, const DimList& dims, bool keepdim = false);

/// y = sum(x, dims, keepdim) / n, n = the number of elements summed into each;  dx = dy / n copied
/// back along the reduced dimensions.  Shapes and dims as sum; n must be positive.
Variable mean(const Variable& x, const DimList& dims, bool keepdim = false);

/// y = log(sum(exp(x))) along `dim`, computed as m + log(sum(exp(x - m))) with m the maximum, so
/// that no exp overflows;  dx = dy * exp(x - y) = dy * softmax(x) along dim.  Shapes and dim as
/// sum over {dim}; a reduction over a dimension of size 0 gives -inf.
Variable logsumexp(const Variable& x, std::int64_t dim, bool keepdim = false);

}  // namespace ag
