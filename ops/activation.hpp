// Activation functions.
#pragma once

#include "autograd/variable.hpp"

namespace ag {

/// y = max(x, 0);  dx = dy * [x > 0].  Shapes: any -> same.
Variable relu(const Variable& x);

}  // namespace ag
