// Element-wise arithmetic: add, sub, mul, div with NumPy/PyTorch broadcasting, the unary neg, exp,
// log and pow, and the operators that spell them.
#pragma once

#include "autograd/variable.hpp"
#include "ops/reduce.hpp"  // sum, mean: what arithmetic is most often reduced to a loss with

namespace ag {

/// y = a + b, broadcasting as PyTorch does: shapes are aligned from the right and a missing or
/// size-1 dimension stretches ([N, C] + [C], [N, C, H, W] + [C, 1, 1]).
/// da = sum of dy over a's broadcast dimensions, likewise db.
/// a and b must share a dtype; otherwise, or if the shapes do not broadcast, throws naming the op.
Variable add(const Variable& a, const Variable& b);

/// y = a - b element-wise, broadcasting as add.  da = dy,  db = -dy (each reduced as in add).
Variable sub(const Variable& a, const Variable& b);

/// y = a * b element-wise, broadcasting as add.  da = dy * b,  db = dy * a (each reduced).
Variable mul(const Variable& a, const Variable& b);

/// y = a / b element-wise, broadcasting as add.  da = dy / b,  db = -dy * a / b^2 (each reduced).
/// Division by 0 gives inf or nan, as in IEEE arithmetic.
Variable div(const Variable& a, const Variable& b);

/// y = -x;  dx = -dy.  Shapes: any -> same.
Variable neg(const Variable& x);

/// y = e^x;  dx = dy * y.  Shapes: any -> same.
Variable exp(const Variable& x);

/// y = ln(x);  dx = dy / x.  Shapes: any -> same.  x = 0 gives -inf, x < 0 nan, as std::log.
Variable log(const Variable& x);

/// y = x^p;  dx = dy * p * x^(p - 1), and 0 for p = 0.  Shapes: any -> same.  A negative x with
/// a non-integer p gives nan, as std::pow.
Variable pow(const Variable& x, double exponent);

/// The broadcast result shape of a and b; throws naming `op` and both shapes if they do not fit.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);

// Operators, so that math reads as math: 1.7159 * tanh(x * (2.0 / 3)). Each is the op above; a
// double operand becomes a 0-d constant of the other operand's dtype that requires no grad and
// broadcasts, so the graph shows, say, "mul" with the constant as one of its inputs.

/// add(a, b).
Variable operator+(const Variable& a, const Variable& b);
Variable operator+(const Variable& a, double b);
Variable operator+(double a, const Variable& b);
/// sub(a, b).
Variable operator-(const Variable& a, const Variable& b);
Variable operator-(const Variable& a, double b);
Variable operator-(double a, const Variable& b);
/// mul(a, b).
Variable operator*(const Variable& a, const Variable& b);
Variable operator*(const Variable& a, double b);
Variable operator*(double a, const Variable& b);
/// div(a, b).
Variable operator/(const Variable& a, const Variable& b);
Variable operator/(const Variable& a, double b);
Variable operator/(double a, const Variable& b);
/// neg(x).
Variable operator-(const Variable& x);

}  // namespace ag
