// Element-wise add and mul with PyTorch broadcasting, and the sum / mean reductions to a scalar.
#include "ops/arithmetic.hpp"

#include <algorithm>
#include <string>

namespace ag {

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
std::vector<std::int64_t> broadcast_strides(const Shape& shape, const Shape& out) {
  std::vector<std::int64_t> strides(out.size(), 0);
  const std::size_t offset = out.size() - shape.size();
  std::int64_t stride = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] != 1) strides[offset + d] = stride;
    stride *= shape[d];
  }
  return strides;
}

// Calls visit(out_index, a_index, b_index) for every element of `out` in row-major order, with the
// flat indices of the elements of a and b it reads (strides from broadcast_strides). An odometer
// over all dimensions but the last, which runs as a plain inner loop.
template <class Visit>
void for_each_broadcast(const Shape& out, const std::vector<std::int64_t>& stride_a,
                        const std::vector<std::int64_t>& stride_b, Visit visit) {
  const std::int64_t numel = shape_numel(out);
  if (numel == 0) return;
  if (out.empty()) {
    visit(std::int64_t{0}, std::int64_t{0}, std::int64_t{0});
    return;
  }
  const std::size_t last = out.size() - 1;
  const std::int64_t inner = out[last], inner_a = stride_a[last], inner_b = stride_b[last];
  std::vector<std::int64_t> index(last, 0);
  std::int64_t offset_a = 0, offset_b = 0;
  for (std::int64_t o = 0; o < numel; o += inner) {
    for (std::int64_t j = 0; j < inner; ++j)
      visit(o + j, offset_a + j * inner_a, offset_b + j * inner_b);
    for (std::size_t d = last; d-- > 0;) {
      if (++index[d] < out[d]) {
        offset_a += stride_a[d];
        offset_b += stride_b[d];
        break;
      }
      index[d] = 0;
      offset_a -= (out[d] - 1) * stride_a[d];
      offset_b -= (out[d] - 1) * stride_b[d];
    }
  }
}

// dy summed over the dimensions `shape` was broadcast along: the adjoint of broadcasting.
Tensor sum_to_shape(const Tensor& dy, const Shape& shape) {
  if (dy.shape() == shape) return dy;
  Tensor grad(shape, dy.dtype());
  const auto strides = broadcast_strides(shape, dy.shape());
  dispatch(dy.dtype(), [&]<class T>() {
    const T* dy_data = dy.data<T>();
    T* g = grad.data<T>();
    for_each_broadcast(dy.shape(), strides, strides,
                       [&](std::int64_t o, std::int64_t i, std::int64_t) { g[i] += dy_data[o]; });
  });
  return grad;
}

// Sum in double whatever the dtype: a float accumulator loses digits over long reductions.
double sum_of(const Tensor& x) {
  return dispatch(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    double total = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) total += p[i];
    return total;
  });
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
  check_operands("add", a, b);
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), "add");
  Tensor y(out_shape, a.dtype());
  dispatch(a.dtype(), [&]<class T>() {
    const T* a_data = a.value().data<T>();
    const T* b_data = b.value().data<T>();
    T* y_data = y.data<T>();
    for_each_broadcast(out_shape, broadcast_strides(a.shape(), out_shape),
                       broadcast_strides(b.shape(), out_shape),
                       [&](std::int64_t o, std::int64_t i, std::int64_t j) {
                         y_data[o] = a_data[i] + b_data[j];
                       });
  });
  // Saves only the input shapes.
  return record(std::move(y), "add", {a, b},
                [a_shape = a.shape(), b_shape = b.shape()](const Tensor& dy,
                                                           const GradMask& needs) {
                  return TensorList{needs[0] ? sum_to_shape(dy, a_shape) : Tensor{},
                                             needs[1] ? sum_to_shape(dy, b_shape) : Tensor{}};
                });
}

Variable mul(const Variable& a, const Variable& b) {
  check_operands("mul", a, b);
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), "mul");
  Tensor y(out_shape, a.dtype());
  const auto stride_a = broadcast_strides(a.shape(), out_shape);
  const auto stride_b = broadcast_strides(b.shape(), out_shape);
  dispatch(a.dtype(), [&]<class T>() {
    const T* a_data = a.value().data<T>();
    const T* b_data = b.value().data<T>();
    T* y_data = y.data<T>();
    for_each_broadcast(out_shape, stride_a, stride_b,
                       [&](std::int64_t o, std::int64_t i, std::int64_t j) {
                         y_data[o] = a_data[i] * b_data[j];
                       });
  });
  // Saves b (shared, not copied) when a needs a gradient, and a when b does.
  const bool saving = needs_grad({a, b});
  const SavedTensor saved_a =
      saving && b.requires_grad() ? SavedTensor(a.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_b =
      saving && a.requires_grad() ? SavedTensor(b.value(), /*input=*/1) : SavedTensor{};
  return record(
      std::move(y), "mul", {a, b},
      [saved_a, saved_b, a_shape = a.shape(), b_shape = b.shape(), stride_a, stride_b](
          const Tensor& dy, const GradMask& needs) {
        if ((needs[0] && !saved_b.defined()) || (needs[1] && !saved_a.defined()))
          fail("mul", "an input began requiring grad after the forward; its factor was not saved");
        Tensor grad_a = needs[0] ? Tensor(a_shape, dy.dtype()) : Tensor{};
        Tensor grad_b = needs[1] ? Tensor(b_shape, dy.dtype()) : Tensor{};
        dispatch(dy.dtype(), [&]<class T>() {
          const T* dy_data = dy.data<T>();
          if (needs[0]) {
            T* g = grad_a.data<T>();
            const T* b_data = saved_b.unpack().data<T>();
            for_each_broadcast(dy.shape(), stride_a, stride_b,
                               [&](std::int64_t o, std::int64_t i, std::int64_t j) {
                                 g[i] += dy_data[o] * b_data[j];
                               });
          }
          if (needs[1]) {
            T* g = grad_b.data<T>();
            const T* a_data = saved_a.unpack().data<T>();
            for_each_broadcast(dy.shape(), stride_a, stride_b,
                               [&](std::int64_t o, std::int64_t i, std::int64_t j) {
                                 g[j] += dy_data[o] * a_data[i];
                               });
          }
        });
        return TensorList{grad_a, grad_b};
      });
}

Variable sum(const Variable& x) {
  if (!x.defined()) fail("sum", "undefined input");
  Tensor y = Tensor::full({}, sum_of(x.value()), x.dtype());
  // Saves only x's shape.
  return record(std::move(y), "sum", {x},
                [x_shape = x.shape()](const Tensor& dy, const GradMask&) {
                  return TensorList{Tensor::full(x_shape, dy.item(), dy.dtype())};
                });
}

Variable mean(const Variable& x) {
  if (!x.defined()) fail("mean", "undefined input");
  const std::int64_t n = x.value().numel();
  if (n == 0) fail("mean", "mean of an empty tensor of shape " + shape_str(x.shape()));
  Tensor y = Tensor::full({}, sum_of(x.value()) / static_cast<double>(n), x.dtype());
  // Saves only x's shape.
  return record(std::move(y), "mean", {x},
                [x_shape = x.shape(), n](const Tensor& dy, const GradMask&) {
                  return TensorList{
                      Tensor::full(x_shape, dy.item() / static_cast<double>(n), dy.dtype())};
                });
}

}  // namespace ag
