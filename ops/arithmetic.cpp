// Element-wise add, sub, mul, div with PyTorch broadcasting; neg, exp, log, pow; the operators.
#include "ops/arithmetic.hpp"

#include "ops/kernels/elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace ag {

using kernels::map_elements;
using kernels::zip_elements;

namespace {

void check_operands(std::string_view op, const Variable& a, const Variable& b) {
  if (!a.defined() || !b.defined()) fail(op, "undefined input");
  if (a.dtype() != b.dtype())
    fail(op, "dtype mismatch: " + shape_str(a.shape()) + " " + std::string(dtype_name(a.dtype())) +
                 " with " + shape_str(b.shape()) + " " + std::string(dtype_name(b.dtype())));
}

// The strides of `shape` (contiguous, row-major) seen from the broadcast shape `out`: 0 along the
// dimensions it is broadcast over (missing leading ones and size-1 ones), so an index into `out`
// maps to the element of `shape` it reads.
Shape broadcast_strides(const Shape& shape, const Shape& out) {
  Shape strides(out.size(), 0);
  const std::size_t offset = out.size() - shape.size();
  std::int64_t stride = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1) strides[offset + d] = stride;
    stride *= shape[d];
  }
  return strides;
}

// How the elements of y = a (op) b read those of a and b.
struct Broadcast {
  Shape out;                     // y's shape
  Shape stride_a, stride_b;      // from broadcast_strides
  std::int64_t numel = 0, numel_a = 0, numel_b = 0;
};

Broadcast plan_broadcast(std::string_view op, const Variable& a, const Variable& b) {
  check_operands(op, a, b);
  Broadcast bc;
  bc.out = broadcast_shapes(a.shape(), b.shape(), op);
  bc.stride_a = broadcast_strides(a.shape(), bc.out);
  bc.stride_b = broadcast_strides(b.shape(), bc.out);
  bc.numel = shape_numel(bc.out);
  bc.numel_a = shape_numel(a.shape());
  bc.numel_b = shape_numel(b.shape());
  return bc;
}

// Calls visit(out_index, a_index, b_index) for every element of `out` in row-major order, with the
// flat indices of the elements of a and b it reads. An operand with as many elements as y is read
// in y's order (its shape differs at most by 1s) and a one-element operand is read at 0, so same
// shapes and tensor-with-scalar are single plain loops; any other broadcast is an odometer over
// all dimensions but the last, which runs as a plain inner loop.
template <class Visit>
void for_each_broadcast(const Broadcast& bc, Visit visit) {
  const std::int64_t numel = bc.numel;
  if (bc.numel_a == numel && bc.numel_b == numel) {
    for (std::int64_t o = 0; o < numel; ++o) visit(o, o, o);
    return;
  }
  if (bc.numel_a == 1 && bc.numel_b == numel) {
    for (std::int64_t o = 0; o < numel; ++o) visit(o, std::int64_t{0}, o);
    return;
  }
  if (bc.numel_a == numel && bc.numel_b == 1) {
    for (std::int64_t o = 0; o < numel; ++o) visit(o, o, std::int64_t{0});
    return;
  }
  if (numel == 0) return;
  // Here out has at least one dimension: a 0-d out has one element and took a branch above.
  const Shape& out = bc.out;
  const std::size_t last = out.size() - 1;
  const std::int64_t inner = out[last], inner_a = bc.stride_a[last], inner_b = bc.stride_b[last];
  Shape index(last, 0);
  std::int64_t offset_a = 0, offset_b = 0;
  for (std::int64_t o = 0; o < numel; o += inner) {
    for (std::int64_t j = 0; j < inner; ++j)
      visit(o + j, offset_a + j * inner_a, offset_b + j * inner_b);
    for (std::size_t d = last; d-- > 0;) {
      if (++index[d] < out[d]) {
        offset_a += bc.stride_a[d];
        offset_b += bc.stride_b[d];
        break;
      }
      index[d] = 0;
      offset_a -= (out[d] - 1) * bc.stride_a[d];
      offset_b -= (out[d] - 1) * bc.stride_b[d];
    }
  }
}

// y[o] = f(a[i], b[j]) over the broadcast.
template <class F>
Tensor broadcast_map(const Broadcast& bc, const Variable& a, const Variable& b, F f) {
  Tensor y = Tensor::empty(bc.out, a.dtype());
  dispatch(a.dtype(), [&]<class T>() {
    const T* a_data = a.value().data<T>();
    const T* b_data = b.value().data<T>();
    T* y_data = y.data<T>();
    for_each_broadcast(bc, [&](std::int64_t o, std::int64_t i, std::int64_t j) {
      y_data[o] = f(a_data[i], b_data[j]);
    });
  });
  return y;
}

// The gradient of operand a (of_a) or b of shape `shape`: each of its elements gets the sum of
// term(o, i, j) over the elements o of y that read it (the adjoint of broadcasting).
template <class T, class Term>
Tensor operand_grad(const Broadcast& bc, bool of_a, const Shape& shape, Term term) {
  const std::int64_t numel = of_a ? bc.numel_a : bc.numel_b;
  if (numel == bc.numel) {  // read once per element of y, in y's order
    Tensor grad = Tensor::empty(shape, dtype_of<T>());
    T* g = grad.data<T>();
    for_each_broadcast(bc, [&](std::int64_t o, std::int64_t i, std::int64_t j) {
      g[o] = term(o, i, j);
    });
    return grad;
  }
  Tensor grad(shape, dtype_of<T>());
  T* g = grad.data<T>();
  if (numel == 1) {  // read by every element of y: summed in double, as a float loses digits
    double total = 0;
    for_each_broadcast(bc, [&](std::int64_t o, std::int64_t i, std::int64_t j) {
      total += term(o, i, j);
    });
    g[0] = static_cast<T>(total);
  } else {
    for_each_broadcast(bc, [&](std::int64_t o, std::int64_t i, std::int64_t j) {
      g[of_a ? i : j] += term(o, i, j);
    });
  }
  return grad;
}

// dy summed back to `shape` (one of add's or sub's operands), times sign.
Tensor sum_to_shape(const Tensor& dy, const Broadcast& bc, bool of_a, const Shape& shape,
                    double sign) {
  if (sign == 1 && shape_numel(shape) == bc.numel)  // dy itself (shared, not copied)
    return dy.shape() == shape ? dy : dy.reshape(shape);
  return dispatch(dy.dtype(), [&]<class T>() {
    const T* dy_data = dy.data<T>();
    const T s = static_cast<T>(sign);
    return operand_grad<T>(bc, of_a, shape, [&](auto o, auto, auto) { return s * dy_data[o]; });
  });
}

// A double operand of an operator: a 0-d constant with the dtype of the other operand.
Variable constant_like(double value, const Variable& other, std::string_view op) {
  if (!other.defined()) fail(op, "undefined input");
  return Variable(Tensor::full({}, value, other.dtype()));
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op) {
  Shape out(std::max(a.size(), b.size()));
  // Right-aligned: dimension d from the end of each; a missing dimension counts as 1.
  for (std::size_t d = 0; d < out.size(); ++d) {
    const std::int64_t size_a = d < a.size() ? a[a.size() - 1 - d] : 1;
    const std::int64_t size_b = d < b.size() ? b[b.size() - 1 - d] : 1;
    if (size_a != size_b && size_a != 1 && size_b != 1)
      fail(op, "cannot broadcast " + shape_str(a) + " with " + shape_str(b));
    out[out.size() - 1 - d] = size_a == 1 ? size_b : size_a;
  }
  return out;
}

Variable add(const Variable& a, const Variable& b) {
  const Broadcast bc = plan_broadcast("add", a, b);
  Tensor y = broadcast_map(bc, a, b, [](auto u, auto v) { return u + v; });
  // Saves only the shapes.
  return record(std::move(y), "add", {a, b},
                [bc, a_shape = a.shape(), b_shape = b.shape()](const Tensor& dy,
                                                               const GradMask& needs) {
                  return TensorList{needs[0] ? sum_to_shape(dy, bc, true, a_shape, 1) : Tensor{},
                                    needs[1] ? sum_to_shape(dy, bc, false, b_shape, 1) : Tensor{}};
                },
                // Curvature: dy/da = dy/db = 1, so h sums back like the gradient.
                [bc, a_shape = a.shape(), b_shape = b.shape()](const Tensor& h, const Tensor&,
                                                               const GradMask& needs) {
                  return TensorList{needs[0] ? sum_to_shape(h, bc, true, a_shape, 1) : Tensor{},
                                    needs[1] ? sum_to_shape(h, bc, false, b_shape, 1) : Tensor{}};
                });
}

Variable sub(const Variable& a, const Variable& b) {
  const Broadcast bc = plan_broadcast("sub", a, b);
  Tensor y = broadcast_map(bc, a, b, [](auto u, auto v) { return u - v; });
  // Saves only the shapes.
  return record(std::move(y), "sub", {a, b},
                [bc, a_shape = a.shape(), b_shape = b.shape()](const Tensor& dy,
                                                               const GradMask& needs) {
                  return TensorList{needs[0] ? sum_to_shape(dy, bc, true, a_shape, 1) : Tensor{},
                                    needs[1] ? sum_to_shape(dy, bc, false, b_shape, -1) : Tensor{}};
                },
                // Curvature: (dy/db)^2 = (-1)^2, so h sums back to both operands unsigned.
                [bc, a_shape = a.shape(), b_shape = b.shape()](const Tensor& h, const Tensor&,
                                                               const GradMask& needs) {
                  return TensorList{needs[0] ? sum_to_shape(h, bc, true, a_shape, 1) : Tensor{},
                                    needs[1] ? sum_to_shape(h, bc, false, b_shape, 1) : Tensor{}};
                });
}

Variable mul(const Variable& a, const Variable& b) {
  const Broadcast bc = plan_broadcast("mul", a, b);
  Tensor y = broadcast_map(bc, a, b, [](auto u, auto v) { return u * v; });
  // Saves b (shared, not copied) when a needs a gradient, and a when b does.
  const bool saving = needs_grad({a, b});
  const SavedTensor saved_a =
      saving && b.requires_grad() ? SavedTensor(a.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_b =
      saving && a.requires_grad() ? SavedTensor(b.value(), /*input=*/1) : SavedTensor{};
  return record(
      std::move(y), "mul", {a, b},
      [saved_a, saved_b, bc, a_shape = a.shape(), b_shape = b.shape()](const Tensor& dy,
                                                                        const GradMask& needs) {
        if ((needs[0] && !saved_b.defined()) || (needs[1] && !saved_a.defined()))
          fail("mul", "an input began requiring grad after the forward; its factor was not saved");
        TensorList grads(2);
        dispatch(dy.dtype(), [&]<class T>() {
          const T* dy_data = dy.data<T>();
          if (needs[0]) {  // da = dy * b
            const T* b_data = saved_b.unpack().data<T>();
            grads[0] = operand_grad<T>(bc, true, a_shape, [&](auto o, auto, auto j) {
              return dy_data[o] * b_data[j];
            });
          }
          if (needs[1]) {  // db = dy * a
            const T* a_data = saved_a.unpack().data<T>();
            grads[1] = operand_grad<T>(bc, false, b_shape, [&](auto o, auto i, auto) {
              return dy_data[o] * a_data[i];
            });
          }
        });
        return grads;
      },
      // Curvature: y is linear in each operand, so h_a = h b^2 and h_b = h a^2 (each summed over
      // what it is broadcast to, as a shared weight sums its connections' terms).
      [saved_a, saved_b, bc, a_shape = a.shape(), b_shape = b.shape()](
          const Tensor& h, const Tensor&, const GradMask& needs) {
        TensorList curvatures(2);
        dispatch(h.dtype(), [&]<class T>() {
          const T* h_data = h.data<T>();
          if (needs[0]) {
            const T* b_data = saved_b.unpack().data<T>();
            curvatures[0] = operand_grad<T>(bc, true, a_shape, [&](auto o, auto, auto j) {
              return h_data[o] * b_data[j] * b_data[j];
            });
          }
          if (needs[1]) {
            const T* a_data = saved_a.unpack().data<T>();
            curvatures[1] = operand_grad<T>(bc, false, b_shape, [&](auto o, auto i, auto) {
              return h_data[o] * a_data[i] * a_data[i];
            });
          }
        });
        return curvatures;
      });
}

Variable div(const Variable& a, const Variable& b) {
  const Broadcast bc = plan_broadcast("div", a, b);
  Tensor y = broadcast_map(bc, a, b, [](auto u, auto v) { return u / v; });
  // Saves b (shared, not copied) when either needs a gradient, and a when b does.
  const bool saving = needs_grad({a, b});
  const SavedTensor saved_a =
      saving && b.requires_grad() ? SavedTensor(a.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_b = saving ? SavedTensor(b.value(), /*input=*/1) : SavedTensor{};
  return record(
      std::move(y), "div", {a, b},
      [saved_a, saved_b, bc, a_shape = a.shape(), b_shape = b.shape()](const Tensor& dy,
                                                                        const GradMask& needs) {
        if (needs[1] && !saved_a.defined())
          fail("div", "an input began requiring grad after the forward; a was not saved");
        TensorList grads(2);
        dispatch(dy.dtype(), [&]<class T>() {
          const T* dy_data = dy.data<T>();
          const T* b_data = saved_b.unpack().data<T>();
          if (needs[0])  // da = dy / b
            grads[0] = operand_grad<T>(bc, true, a_shape, [&](auto o, auto, auto j) {
              return dy_data[o] / b_data[j];
            });
          if (needs[1]) {  // db = -dy * a / b^2
            const T* a_data = saved_a.unpack().data<T>();
            grads[1] = operand_grad<T>(bc, false, b_shape, [&](auto o, auto i, auto j) {
              return -dy_data[o] * a_data[i] / (b_data[j] * b_data[j]);
            });
          }
        });
        return grads;
      });
}

Variable neg(const Variable& x) {
  if (!x.defined()) fail("neg", "undefined input");
  Tensor y = map_elements(x.value(), [](auto v) { return -v; });
  // Saves nothing.
  return record(
      std::move(y), "neg", {x},
      [](const Tensor& dy, const GradMask&) { return TensorList{map_elements(dy, [](auto g) { return -g; })}; },
      [](const Tensor& h, const Tensor&, const GradMask&) { return TensorList{h}; });
}

Variable exp(const Variable& x) {
  if (!x.defined()) fail("exp", "undefined input");
  Tensor y = map_elements(x.value(), [](auto v) { return std::exp(v); });
  // Saves the output y (shared with the result): dx = dy * y.
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  return record(
      std::move(y), "exp", {x},
      [saved_y](const Tensor& dy, const GradMask&) {
        return TensorList{zip_elements(saved_y.unpack(), dy, [](auto y, auto g) { return g * y; })};
      },
      // Curvature: dy/dx = d2y/dx2 = y.
      [saved_y](const Tensor& h, const Tensor& g, const GradMask&) {
        return TensorList{
            zip_elements(saved_y.unpack(), h, g, [](auto y, auto h, auto g) { return y * y * h + y * g; })};
      });
}

Variable log(const Variable& x) {
  if (!x.defined()) fail("log", "undefined input");
  Tensor y = map_elements(x.value(), [](auto v) { return std::log(v); });
  // Saves x (shared, not copied): dx = dy / x.
  const SavedTensor saved_x =
      needs_grad({x}) ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  return record(std::move(y), "log", {x}, [saved_x](const Tensor& dy, const GradMask&) {
    return TensorList{zip_elements(saved_x.unpack(), dy, [](auto x, auto g) { return g / x; })};
  });
}

Variable pow(const Variable& x, double exponent) {
  if (!x.defined()) fail("pow", "undefined input");
  // Squares (a squared error, an RBF distance) take the multiply, not a pow call per element.
  Tensor y = exponent == 2 ? map_elements(x.value(), [](auto v) { return v * v; })
                           : map_elements(x.value(), [exponent](auto v) {
                               return std::pow(v, static_cast<decltype(v)>(exponent));
                             });
  // Saves x (shared, not copied): dx = dy * p * x^(p - 1).
  const SavedTensor saved_x =
      needs_grad({x}) ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  return with_attributes(record(std::move(y), "pow", {x}, [saved_x, exponent](const Tensor& dy, const GradMask&) {
    const Tensor& x_value = saved_x.unpack();
    // x^0 is constant: its gradient is 0 even at x = 0, where p * x^(p - 1) would be 0 * inf.
    if (exponent == 0) return TensorList{Tensor(dy.shape(), dy.dtype())};
    if (exponent == 2) return TensorList{zip_elements(x_value, dy, [](auto x, auto g) { return 2 * g * x; })};
    return TensorList{zip_elements(x_value, dy, [exponent](auto x, auto g) {
      const auto p = static_cast<decltype(x)>(exponent);
      return g * p * std::pow(x, p - 1);
    })};
  },
  // Curvature: (dy/dx)^2 h + d2y/dx2 g = (p x^(p-1))^2 h + p (p-1) x^(p-2) g; x^2 gives 2 g, the
  // second derivative a squared error seeds.
  [saved_x, exponent](const Tensor& h, const Tensor& g, const GradMask&) {
    if (exponent == 0) return TensorList{Tensor(h.shape(), h.dtype())};
    return TensorList{zip_elements(saved_x.unpack(), h, g, [exponent](auto x, auto h, auto g) {
      const auto p = static_cast<decltype(x)>(exponent);
      const auto slope = p * std::pow(x, p - 1);
      const auto bend = p == 1 ? decltype(x)(0) : p * (p - 1) * std::pow(x, p - 2);
      return slope * slope * h + bend * g;
    })};
  }), [&] { return OpAttributes{{"exponent", exponent}}; });
}

Variable operator+(const Variable& a, const Variable& b) { return add(a, b); }
Variable operator+(const Variable& a, double b) { return add(a, constant_like(b, a, "add")); }
Variable operator+(double a, const Variable& b) { return add(constant_like(a, b, "add"), b); }
Variable operator-(const Variable& a, const Variable& b) { return sub(a, b); }
Variable operator-(const Variable& a, double b) { return sub(a, constant_like(b, a, "sub")); }
Variable operator-(double a, const Variable& b) { return sub(constant_like(a, b, "sub"), b); }
Variable operator*(const Variable& a, const Variable& b) { return mul(a, b); }
Variable operator*(const Variable& a, double b) { return mul(a, constant_like(b, a, "mul")); }
Variable operator*(double a, const Variable& b) { return mul(constant_like(a, b, "mul"), b); }
Variable operator/(const Variable& a, const Variable& b) { return div(a, b); }
Variable operator/(const Variable& a, double b) { return div(a, constant_like(b, a, "div")); }
Variable operator/(double a, const Variable& b) { return div(constant_like(a, b, "div"), b); }
Variable operator-(const Variable& x) { return neg(x); }

}  // namespace ag
