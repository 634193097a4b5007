// softmax and log_softmax along one dimension of a tensor of any rank.
#include "ops/softmax.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>

namespace ag {

namespace {

// A tensor seen as [outer, size, inner] around dimension `dim`: the elements of one softmax are
// size values `inner` apart.
struct Fibers {
  std::int64_t outer = 1, size = 1, inner = 1;
};

// The fibers of x along `dim`, after checking dim (negative counts from the end). A 0-d tensor
// takes dim 0 or -1, as in PyTorch: one softmax over its single element.
Fibers fibers_along(std::string_view op, const Variable& x, std::int64_t dim) {
  if (!x.defined()) fail(op, "undefined input");
  const Shape& shape = x.shape();
  const auto rank = static_cast<std::int64_t>(shape.size());
  const std::int64_t rank_or_one = std::max<std::int64_t>(rank, 1);
  if (dim < -rank_or_one || dim >= rank_or_one)
    fail(op, "dim " + std::to_string(dim) + " out of range for shape " + shape_str(shape));
  if (dim < 0) dim += rank_or_one;
  Fibers f;
  for (std::int64_t d = 0; d < rank; ++d) {
    const std::int64_t extent = shape[static_cast<std::size_t>(d)];
    if (d < dim) f.outer *= extent;
    else if (d == dim) f.size = extent;
    else f.inner *= extent;
  }
  return f;
}

// Calls visit(first) for every fiber, with the flat index of its first element; element k of the
// fiber is at first + k * f.inner.
template <class Visit>
void for_each_fiber(const Fibers& f, Visit visit) {
  for (std::int64_t o = 0; o < f.outer; ++o)
    for (std::int64_t i = 0; i < f.inner; ++i) visit(o * f.size * f.inner + i);
}

// The largest element of the fiber starting at xs (f.size > 0), which both ops subtract before
// exp(): exp() stays <= 1, no overflow however large x is.
template <class T>
T fiber_max(const Fibers& f, const T* xs) {
  T max = xs[0];
  for (std::int64_t k = 1; k < f.size; ++k) max = std::max(max, xs[k * f.inner]);
  return max;
}

}  // namespace

Variable softmax(const Variable& x, std::int64_t dim) {
  const Fibers f = fibers_along("softmax", x, dim);

  Tensor y(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    if (f.size == 0) return;
    for_each_fiber(f, [&](std::int64_t first) {
      const T* xs = x.value().data<T>() + first;
      T* ys = y.data<T>() + first;
      // Subtracting the maximum also keeps the sum >= 1 (no 0 / 0).
      const T max = fiber_max(f, xs);
      T sum_exp = 0;
      for (std::int64_t k = 0; k < f.size; ++k) {
        ys[k * f.inner] = std::exp(xs[k * f.inner] - max);
        sum_exp += ys[k * f.inner];
      }
      const T inverse = T(1) / sum_exp;
      for (std::int64_t k = 0; k < f.size; ++k) ys[k * f.inner] *= inverse;
    });
  });

  // Saves the output y, shared with the result; not x.
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  auto backward = [saved_y, f](const Tensor& dy, const GradMask&) {
    const Tensor& y = saved_y.unpack();
    Tensor dx(dy.shape(), dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      for_each_fiber(f, [&](std::int64_t first) {
        const T* ys = y.data<T>() + first;
        const T* dys = dy.data<T>() + first;
        T* dxs = dx.data<T>() + first;
        // dx = y * (dy - <dy, y>): the softmax Jacobian diag(y) - y y^T applied to dy.
        T dot = 0;
        for (std::int64_t k = 0; k < f.size; ++k) dot += dys[k * f.inner] * ys[k * f.inner];
        for (std::int64_t k = 0; k < f.size; ++k)
          dxs[k * f.inner] = ys[k * f.inner] * (dys[k * f.inner] - dot);
      });
    });
    return TensorList{dx};
  };
  return with_attributes(record(std::move(y), "softmax", {x}, std::move(backward)),
                         [&] { return OpAttributes{{"dim", dim}}; });
}

Variable log_softmax(const Variable& x, std::int64_t dim) {
  const Fibers f = fibers_along("log_softmax", x, dim);

  Tensor y(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    if (f.size == 0) return;
    for_each_fiber(f, [&](std::int64_t first) {
      const T* xs = x.value().data<T>() + first;
      T* ys = y.data<T>() + first;
      const T max = fiber_max(f, xs);
      T sum_exp = 0;
      for (std::int64_t k = 0; k < f.size; ++k) sum_exp += std::exp(xs[k * f.inner] - max);
      // (x - max) - log(sum), not x - (max + log(sum)): x - max is exact for nearby values,
      // while max + log(sum) rounds log(sum) to the precision of max (1e-4 at 1000 in float).
      const T log_sum_exp = std::log(sum_exp);
      for (std::int64_t k = 0; k < f.size; ++k)
        ys[k * f.inner] = (xs[k * f.inner] - max) - log_sum_exp;
    });
  });

  // Saves the output y (softmax = exp(y)), shared with the result; not x.
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  auto backward = [saved_y, f](const Tensor& dy, const GradMask&) {
    const Tensor& y = saved_y.unpack();
    Tensor dx(dy.shape(), dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      for_each_fiber(f, [&](std::int64_t first) {
        const T* ys = y.data<T>() + first;
        const T* dys = dy.data<T>() + first;
        T* dxs = dx.data<T>() + first;
        T sum_dy = 0;
        for (std::int64_t k = 0; k < f.size; ++k) sum_dy += dys[k * f.inner];
        for (std::int64_t k = 0; k < f.size; ++k)
          dxs[k * f.inner] = dys[k * f.inner] - std::exp(ys[k * f.inner]) * sum_dy;
      });
    });
    return TensorList{dx};
  };
  return with_attributes(record(std::move(y), "log_softmax", {x}, std::move(backward)),
                         [&] { return OpAttributes{{"dim", dim}}; });
}

}  // namespace ag
