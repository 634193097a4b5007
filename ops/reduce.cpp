// sum and mean over all elements or chosen dimensions, and logsumexp: each a pass over x in memory
// order that adds every element into the output element it reduces to.
#include "ops/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace ag {

namespace {

// How x reduces to y. Adjacent dimensions that are all reduced or all kept are merged and size-1
// ones dropped, so [N, C, H, W] over {2, 3} is [N*C kept, H*W reduced] and the walk below has one
// level per merged dimension: for the usual reductions, a plain loop inside one other.
struct Reduction {
  Shape out_shape;        // y's shape, with the reduced dimensions as 1 (keepdim) or dropped
  std::int64_t count = 1;  // elements of x reduced into each element of y
  Shape sizes;            // the merged dimensions of x, outermost first
  Shape out_strides;      // stride in y of each merged dimension; 0 where it is reduced
};

Reduction plan_reduction(std::string_view op, const Shape& shape, const DimList& dims,
                         bool keepdim) {
  // A 0-d tensor takes dim 0 or -1, as in PyTorch.
  const auto rank = static_cast<std::int64_t>(shape.size());
  const std::int64_t rank_or_one = std::max<std::int64_t>(rank, 1);
  SmallList<bool> reduced(static_cast<std::size_t>(rank_or_one), dims.empty());
  const auto dims_and_shape = [&] {  // built only on failure
    return " in dims " + shape_str(Shape(dims.begin(), dims.end())) + " for x of shape " +
           shape_str(shape);
  };
  for (const std::int64_t dim : dims) {
    if (dim < -rank_or_one || dim >= rank_or_one)
      fail(op, "dim " + std::to_string(dim) + " out of range" + dims_and_shape());
    const auto d = static_cast<std::size_t>(dim < 0 ? dim + rank_or_one : dim);
    if (reduced[d])
      fail(op, "dimension " + std::to_string(d) + " appears more than once" + dims_and_shape());
    reduced[d] = true;
  }

  Reduction r;
  SmallList<bool> merged_reduced;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (reduced[d]) r.count *= shape[d];
    if (!reduced[d] || keepdim) r.out_shape.push_back(reduced[d] ? 1 : shape[d]);
    if (shape[d] == 1) continue;  // moves no index
    if (!r.sizes.empty() && merged_reduced.back() == reduced[d]) {
      r.sizes.back() *= shape[d];
    } else {
      r.sizes.push_back(shape[d]);
      merged_reduced.push_back(reduced[d]);
    }
  }
  r.out_strides.assign(r.sizes.size(), 0);
  std::int64_t stride = 1;
  for (std::size_t d = r.sizes.size(); d-- > 0;)
    if (!merged_reduced[d]) {
      r.out_strides[d] = stride;
      stride *= r.sizes[d];
    }
  return r;
}

// Calls visit(x_offset, y_offset, n, y_step) for every run of n consecutive elements of x along the
// innermost merged dimension, in memory order: element x_offset + k reduces into element
// y_offset + k * y_step of y (y_step is 0 when that dimension is reduced, 1 when it is kept).
template <class Visit>
void for_each_run(const Reduction& r, Visit visit) {
  if (r.sizes.empty()) {  // one element
    visit(std::int64_t{0}, std::int64_t{0}, std::int64_t{1}, std::int64_t{0});
    return;
  }
  std::int64_t numel = 1;
  for (const std::int64_t size : r.sizes) numel *= size;
  const std::size_t last = r.sizes.size() - 1;
  const std::int64_t n = r.sizes[last], y_step = r.out_strides[last];
  Shape index(last, 0);
  std::int64_t y_offset = 0;
  for (std::int64_t x_offset = 0; x_offset < numel; x_offset += n) {
    visit(x_offset, y_offset, n, y_step);
    for (std::size_t d = last; d-- > 0;) {
      if (++index[d] < r.sizes[d]) {
        y_offset += r.out_strides[d];
        break;
      }
      index[d] = 0;
      y_offset -= (r.sizes[d] - 1) * r.out_strides[d];
    }
  }
}

// y = scale * the sum of the elements of x reducing into each, added up in double: a float
// accumulator loses digits over long reductions.
Tensor reduce_sum(const Tensor& x, const Reduction& r, double scale) {
  Tensor total(r.out_shape, DType::Float64);
  double* t = total.data<double>();
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.data<T>();
    for_each_run(r, [&](std::int64_t i, std::int64_t o, std::int64_t n, std::int64_t step) {
      if (step == 0) {
        double run = 0;
        for (std::int64_t k = 0; k < n; ++k) run += x_data[i + k];
        t[o] += run;
      } else {
        for (std::int64_t k = 0; k < n; ++k) t[o + k] += x_data[i + k];
      }
    });
  });
  if (scale != 1)
    for (std::int64_t k = 0; k < total.numel(); ++k) t[k] *= scale;
  return x.dtype() == DType::Float64 ? total : total.to(x.dtype());
}

// dx = scale * dy copied back along the reduced dimensions: the adjoint of reduce_sum.
Tensor spread(const Tensor& dy, const Reduction& r, const Shape& x_shape, double scale) {
  Tensor dx = Tensor::empty(x_shape, dy.dtype());
  dispatch(dy.dtype(), [&]<class T>() {
    const T* dy_data = dy.data<T>();
    T* dx_data = dx.data<T>();
    const T s = static_cast<T>(scale);
    for_each_run(r, [&](std::int64_t i, std::int64_t o, std::int64_t n, std::int64_t step) {
      for (std::int64_t k = 0; k < n; ++k) dx_data[i + k] = s * dy_data[o + k * step];
    });
  });
  return dx;
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

Variable sum(const Variable& x) {
  if (!x.defined()) fail("sum", "undefined input");
  Tensor y = Tensor::full({}, sum_of(x.value()), x.dtype());
  // Saves only x's shape.
  return record(std::move(y), "sum", {x},
                [x_shape = x.shape()](const Tensor& dy, const GradMask&) {
                  return TensorList{Tensor::full(x_shape, dy.item(), dy.dtype())};
                },
                // Curvature: dy/dx = 1 for every element.
                [x_shape = x.shape()](const Tensor& h, const Tensor&, const GradMask&) {
                  return TensorList{Tensor::full(x_shape, h.item(), h.dtype())};
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
                },
                // Curvature: dy/dx = 1/n, squared.
                [x_shape = x.shape(), n](const Tensor& h, const Tensor&, const GradMask&) {
                  const auto count = static_cast<double>(n);
                  return TensorList{Tensor::full(x_shape, h.item() / (count * count), h.dtype())};
                });
}

Variable sum(const Variable& x, const DimList& dims, bool keepdim) {
  if (!x.defined()) fail("sum", "undefined input");
  const Reduction r = plan_reduction("sum", x.shape(), dims, keepdim);
  Tensor y = reduce_sum(x.value(), r, 1.0);
  // Saves only x's shape and the plan.
  return with_attributes(record(std::move(y), "sum", {x},
                [r, x_shape = x.shape()](const Tensor& dy, const GradMask&) {
                  return TensorList{spread(dy, r, x_shape, 1.0)};
                },
                // Curvature: dy/dx = 1, so h spreads like the gradient.
                [r, x_shape = x.shape()](const Tensor& h, const Tensor&, const GradMask&) {
                  return TensorList{spread(h, r, x_shape, 1.0)};
                }), [&] { return OpAttributes{{"dims", dims}, {"keepdim", keepdim}}; });
}

Variable mean(const Variable& x, const DimList& dims, bool keepdim) {
  if (!x.defined()) fail("mean", "undefined input");
  const Reduction r = plan_reduction("mean", x.shape(), dims, keepdim);
  if (r.count == 0)
    fail("mean", "mean over no elements: dims " + shape_str(Shape(dims.begin(), dims.end())) +
                     " of x of shape " + shape_str(x.shape()));
  const double scale = 1.0 / static_cast<double>(r.count);
  Tensor y = reduce_sum(x.value(), r, scale);
  // Saves only x's shape and the plan.
  return with_attributes(record(std::move(y), "mean", {x},
                [r, x_shape = x.shape(), scale](const Tensor& dy, const GradMask&) {
                  return TensorList{spread(dy, r, x_shape, scale)};
                },
                // Curvature: dy/dx = 1/count, squared.
                [r, x_shape = x.shape(), scale](const Tensor& h, const Tensor&, const GradMask&) {
                  return TensorList{spread(h, r, x_shape, scale * scale)};
                }), [&] { return OpAttributes{{"dims", dims}, {"keepdim", keepdim}}; });
}

Variable logsumexp(const Variable& x, std::int64_t dim, bool keepdim) {
  if (!x.defined()) fail("logsumexp", "undefined input");
  const Reduction r = plan_reduction("logsumexp", x.shape(), {dim}, keepdim);
  Tensor y = Tensor::empty(r.out_shape, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().data<T>();
    T* y_data = y.data<T>();
    // First pass: the maximum of each reduction (in y's storage); -inf over no elements.
    std::fill_n(y_data, y.numel(), -std::numeric_limits<T>::infinity());
    for_each_run(r, [&](std::int64_t i, std::int64_t o, std::int64_t n, std::int64_t step) {
      for (std::int64_t k = 0; k < n; ++k)
        y_data[o + k * step] = std::max(y_data[o + k * step], x_data[i + k]);
    });
    // Shifting by the maximum keeps every exp <= 1. An infinite maximum is not subtracted
    // (inf - inf is nan): y is then +inf, or -inf when every element is -inf, as in PyTorch.
    for (std::int64_t o = 0; o < y.numel(); ++o)
      if (std::isinf(y_data[o])) y_data[o] = 0;
    // Second pass: sum of exp(x - shift) in double.
    Tensor total(r.out_shape, DType::Float64);
    double* t = total.data<double>();
    for_each_run(r, [&](std::int64_t i, std::int64_t o, std::int64_t n, std::int64_t step) {
      for (std::int64_t k = 0; k < n; ++k)
        t[o + k * step] += std::exp(x_data[i + k] - y_data[o + k * step]);
    });
    for (std::int64_t o = 0; o < y.numel(); ++o)
      y_data[o] += static_cast<T>(std::log(t[o]));
  });

  // Saves x and the output y (shared, not copied): softmax = exp(x - y).
  const bool saving = needs_grad({x});
  const SavedTensor saved_x = saving ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_y = saving ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  return with_attributes(record(std::move(y), "logsumexp", {x},
                [saved_x, saved_y, r](const Tensor& dy, const GradMask&) {
                  const Tensor& x_value = saved_x.unpack();
                  const Tensor& y_value = saved_y.unpack();
                  Tensor dx = Tensor::empty(x_value.shape(), dy.dtype());
                  dispatch(dy.dtype(), [&]<class T>() {
                    const T* x_data = x_value.data<T>();
                    const T* y_data = y_value.data<T>();
                    const T* dy_data = dy.data<T>();
                    T* dx_data = dx.data<T>();
                    for_each_run(r, [&](std::int64_t i, std::int64_t o, std::int64_t n,
                                        std::int64_t step) {
                      for (std::int64_t k = 0; k < n; ++k)
                        dx_data[i + k] = dy_data[o + k * step] *
                                         std::exp(x_data[i + k] - y_data[o + k * step]);
                    });
                  });
                  return TensorList{dx};
                },
                // Curvature: with p = softmax = exp(x - y), dy/dx = p and d2y/dx2 = p (1 - p):
                // h_x = p^2 h + p (1 - p) g.
                [saved_x, saved_y, r](const Tensor& h, const Tensor& g, const GradMask&) {
                  const Tensor& x_value = saved_x.unpack();
                  const Tensor& y_value = saved_y.unpack();
                  Tensor hx = Tensor::empty(x_value.shape(), h.dtype());
                  dispatch(h.dtype(), [&]<class T>() {
                    const T* x_data = x_value.data<T>();
                    const T* y_data = y_value.data<T>();
                    const T* h_data = h.data<T>();
                    const T* g_data = g.data<T>();
                    T* hx_data = hx.data<T>();
                    for_each_run(r, [&](std::int64_t i, std::int64_t o, std::int64_t n,
                                        std::int64_t step) {
                      for (std::int64_t k = 0; k < n; ++k) {
                        const T p = std::exp(x_data[i + k] - y_data[o + k * step]);
                        hx_data[i + k] = p * p * h_data[o + k * step] + p * (1 - p) * g_data[o + k * step];
                      }
                    });
                  });
                  return TensorList{hx};
                }), [&] { return OpAttributes{{"dim", dim}, {"keepdim", keepdim}}; });
}

}  // namespace ag
