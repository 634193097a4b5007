// Activation functions.
#pragma once

#include "autograd/variable.hpp"

namespace ag {

/// y = max(x, 0);  dx = dy * [x > 0].  Shapes: any -> same.
Variable relu(const Variable& x);

/// y = tanh(x);  dx = dy * (1 - y^2).  Shapes: any -> same.
Variable tanh(const Variable& x);

/// y = 1 / (1 + e^-x), without overflow for any x;  dx = dy * y * (1 - y).  Shapes: any -> same.
Variable sigmoid(const Variable& x);

}  // namespace ag
