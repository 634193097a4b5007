// Activation functions.
#pragma once

#include "autograd/variable.hpp"

namespace ag {

/// y = max(x, 0);  dx = dy * [x > 0].  Shapes: any -> same.
Variable relu(const Variable& x);

/// y = tanh(x);  dx = dy * (1 - y^2).  Shapes: any -> same.
Variable tanh(const Variable& x);

/// y = amplitude * tanh(slope * x), LeCun's squashing function (1.7159 tanh(2x / 3) in the 1998
/// LeNet-5) as one op;  dx = dy * (slope / amplitude) * (amplitude^2 - y^2).  Shapes: any -> same.
/// The values are those of amplitude * tanh(x * slope) written with three ops, bit for bit.
/// Throws std::invalid_argument("scaled_tanh: ...") for an amplitude of 0 (the gradient is computed
/// from y / amplitude).
Variable scaled_tanh(const Variable& x, double amplitude, double slope);

/// y = 1 / (1 + e^-x), without overflow for any x;  dx = dy * y * (1 - y).  Shapes: any -> same.
Variable sigmoid(const Variable& x);

}  // namespace ag
