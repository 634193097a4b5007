// Shape ops: reshape and flatten, views that share storage with their input; cat and transpose,
// which copy.
#include "ops/shape.hpp"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

namespace ag {

namespace {

// `dim` counted from the end when negative, checked against the rank of `shape`. A 0-d tensor
// takes 0 and -1, as in PyTorch. `what` names the argument in the message ("dim", "start_dim").
std::int64_t wrap_dim(std::string_view op, std::string_view what, std::int64_t dim,
                      const Shape& shape) {
  const auto rank = static_cast<std::int64_t>(shape.size());
  const std::int64_t rank_or_one = std::max<std::int64_t>(rank, 1);
  if (dim < -rank_or_one || dim >= rank_or_one)
    fail(op, std::string(what) + " " + std::to_string(dim) + " out of range for shape " +
                 shape_str(shape));
  return dim < 0 ? dim + rank_or_one : dim;
}

// Product of shape[begin, end).
std::int64_t extent(const Shape& shape, std::size_t begin, std::size_t end) {
  std::int64_t product = 1;
  for (std::size_t d = begin; d < end; ++d) product *= shape[d];
  return product;
}

// A contiguous copy of x with dimensions d0 <= d1 swapped: x seen as [A, M, B, N, C] becomes
// y:[A, N, B, M, C], copied C elements at a time.
Tensor swap_dims(const Tensor& x, std::size_t d0, std::size_t d1) {
  if (d0 == d1) return x.clone();
  const Shape& shape = x.shape();
  const std::int64_t A = extent(shape, 0, d0), M = shape[d0], B = extent(shape, d0 + 1, d1),
                     N = shape[d1], C = extent(shape, d1 + 1, shape.size());
  Shape y_shape = shape;
  std::swap(y_shape[d0], y_shape[d1]);
  Tensor y = Tensor::empty(std::move(y_shape), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for (std::int64_t a = 0; a < A; ++a)
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t b = 0; b < B; ++b)
          for (std::int64_t m = 0; m < M; ++m, out += C)
            std::copy_n(in + (((a * M + m) * B + b) * N + n) * C, C, out);
  });
  return y;
}

}  // namespace

Variable reshape(const Variable& x, Shape shape) {
  if (!x.defined()) fail("reshape", "undefined input");
  Tensor y = x.value().reshape(std::move(shape));  // a view; throws naming reshape and both shapes
  // Saves only x's shape.
  return record(
      std::move(y), "reshape", {x},
      [x_shape = x.shape()](const Tensor& dy, const GradMask&) { return TensorList{dy.reshape(x_shape)}; },
      // Curvature: the same elements, so h reshaped back.
      [x_shape = x.shape()](const Tensor& h, const Tensor&, const GradMask&) {
        return TensorList{h.reshape(x_shape)};
      });
}

Variable flatten(const Variable& x, std::int64_t start_dim) {
  if (!x.defined()) fail("flatten", "undefined input");
  const Shape& shape = x.shape();
  const auto rank = static_cast<std::int64_t>(shape.size());
  // A 0-d tensor flattens to [1] from start_dim 0 or -1, as in PyTorch.
  start_dim = wrap_dim("flatten", "start_dim", start_dim, shape);
  Shape flat(shape.begin(), shape.begin() + std::min(start_dim, rank));
  std::int64_t collapsed = 1;
  for (std::int64_t d = start_dim; d < rank; ++d) collapsed *= shape[static_cast<std::size_t>(d)];
  flat.push_back(collapsed);
  return reshape(x, std::move(flat));
}

Variable cat(const VariableList& xs, std::int64_t dim) {
  // xs:[outer, S_i, inner] around dim -> y:[outer, sum_i S_i, inner]
  if (xs.empty()) fail("cat", "expected at least one input");
  for (std::size_t i = 0; i < xs.size(); ++i)
    if (!xs[i].defined()) fail("cat", "input " + std::to_string(i) + " is undefined");
  const Shape& first = xs[0].shape();
  if (first.empty()) fail("cat", "cannot join 0-d tensors (input 0 has shape [])");
  const auto d = static_cast<std::size_t>(wrap_dim("cat", "dim", dim, first));
  Shape y_shape = first;
  y_shape[d] = 0;
  SmallList<std::int64_t> sizes;  // S_i, each input's size along dim
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Shape& shape = xs[i].shape();
    bool match = shape.size() == first.size();
    for (std::size_t k = 0; match && k < shape.size(); ++k) match = k == d || shape[k] == first[k];
    if (!match)
      fail("cat", "input " + std::to_string(i) + " of shape " + shape_str(shape) +
                      " does not match input 0 of shape " + shape_str(first) + " outside dim " +
                      std::to_string(d));
    if (xs[i].dtype() != xs[0].dtype())
      fail("cat", "input " + std::to_string(i) + " " + shape_str(shape) + " is " +
                      std::string(dtype_name(xs[i].dtype())) + " but input 0 " +
                      shape_str(first) + " is " + std::string(dtype_name(xs[0].dtype())));
    sizes.push_back(shape[d]);
    y_shape[d] += shape[d];
  }
  const std::int64_t outer = extent(first, 0, d), inner = extent(first, d + 1, first.size());

  Tensor y = Tensor::empty(y_shape, xs[0].dtype());
  dispatch(y.dtype(), [&]<class T>() {
    T* out = y.data<T>();
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::size_t i = 0; i < xs.size(); ++i) {
        const std::int64_t chunk = sizes[i] * inner;
        out = std::copy_n(xs[i].value().template data<T>() + o * chunk, chunk, out);
      }
  });

  // Saves only the shapes.
  // dx_i, the slice of dy that input i became; curvature slices h the same way (coefficient 1).
  auto slices = [y_shape, d, sizes, outer, inner](const Tensor& dy, const GradMask& needs) {
    // dx_i = dy[.., offset_i : offset_i + S_i, ..]
    TensorList grads(needs.size());
    for (std::size_t i = 0; i < needs.size(); ++i)
      if (needs[i]) {
        Shape shape = y_shape;
        shape[d] = sizes[i];
        grads[i] = Tensor::empty(std::move(shape), dy.dtype());
      }
    dispatch(dy.dtype(), [&]<class T>() {
      const T* in = dy.data<T>();
      for (std::int64_t o = 0; o < outer; ++o)
        for (std::size_t i = 0; i < sizes.size(); ++i) {
          const std::int64_t chunk = sizes[i] * inner;
          if (needs[i]) std::copy_n(in, chunk, grads[i].data<T>() + o * chunk);
          in += chunk;
        }
    });
    return grads;
  };
  return with_attributes(
      record(std::move(y), "cat", xs, slices,
             [slices](const Tensor& h, const Tensor&, const GradMask& needs) { return slices(h, needs); }),
      [&] { return OpAttributes{{"dim", dim}}; });
}

Variable transpose(const Variable& x, std::int64_t dim0, std::int64_t dim1) {
  if (!x.defined()) fail("transpose", "undefined input");
  const std::int64_t a = wrap_dim("transpose", "dim0", dim0, x.shape()),
                     b = wrap_dim("transpose", "dim1", dim1, x.shape());
  // For a 0-d x both dims wrap to 0: y is a copy, as for any dim0 == dim1.
  const auto d0 = static_cast<std::size_t>(std::min(a, b)),
             d1 = static_cast<std::size_t>(std::max(a, b));
  Tensor y = swap_dims(x.value(), d0, d1);
  // Saves only the two dims; swapping them again undoes the transpose.
  return with_attributes(record(std::move(y), "transpose", {x}, [d0, d1](const Tensor& dy, const GradMask&) {
    return TensorList{swap_dims(dy, d0, d1)};
  }), [&] { return OpAttributes{{"dim0", dim0}, {"dim1", dim1}}; });
}

Variable pad2d(const Variable& x, std::int64_t padding, double value) {
  if (!x.defined()) fail("pad2d", "undefined input");
  if (x.shape().size() != 4) fail("pad2d", "expected x of shape [N, C, H, W], got " + shape_str(x.shape()));
  if (padding < 0) fail("pad2d", "padding must be >= 0, got " + std::to_string(padding));
  const std::int64_t planes = x.shape()[0] * x.shape()[1], height = x.shape()[2], width = x.shape()[3];
  const std::int64_t out_h = height + 2 * padding, out_w = width + 2 * padding;
  Tensor y = Tensor::full({x.shape()[0], x.shape()[1], out_h, out_w}, value, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* in = x.value().data<T>();
    T* out = y.data<T>();
    for (std::int64_t plane = 0; plane < planes; ++plane)
      for (std::int64_t r = 0; r < height; ++r)
        std::copy_n(in + (plane * height + r) * width, width,
                    out + (plane * out_h + r + padding) * out_w + padding);
  });
  // Saves only the geometry. The middle of t: dx for t = dy, h_x for t = h (coefficient 1).
  auto middle = [x_shape = x.shape(), planes, height, width, out_h, out_w, padding](const Tensor& t) {
    Tensor out = Tensor::empty(x_shape, t.dtype());
    dispatch(t.dtype(), [&]<class T>() {
      const T* in = t.data<T>();
      T* o = out.data<T>();
      for (std::int64_t plane = 0; plane < planes; ++plane)
        for (std::int64_t r = 0; r < height; ++r)
          std::copy_n(in + (plane * out_h + r + padding) * out_w + padding, width,
                      o + (plane * height + r) * width);
    });
    return TensorList{out};
  };
  return with_attributes(record(
      std::move(y), "pad2d", {x}, [middle](const Tensor& dy, const GradMask&) { return middle(dy); },
      [middle](const Tensor& h, const Tensor&, const GradMask&) { return middle(h); }),
      [&] { return OpAttributes{{"padding", padding}, {"value", value}}; });
}

}  // namespace ag
