// Dropout.
#pragma once

#include "autograd/variable.hpp"

namespace ag {

/// Training: y = x * mask / (1 - p) with mask[i] = [generator.uniform() >= p], one draw per element
/// in row-major order, so a seed reproduces the mask;  dx = dy * mask / (1 - p).
/// p == 1 gives y = x * 0 (as in PyTorch) and draws nothing.
/// Evaluation (!training) or p == 0: returns x itself (no node, no draw).
/// Shapes: any -> same.  Throws std::invalid_argument("dropout: ...") for p outside [0, 1].
Variable dropout(const Variable& x, double p, bool training, Generator& generator);

}  // namespace ag
