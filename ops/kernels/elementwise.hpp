// Element-by-element maps over same-shaped tensors, written once for both dtypes: the loops of the
// unary ops' forwards and backwards, which then read as their formulas:
//   y = map_elements(x, [](auto v) { return std::tanh(v); });
//   dx = zip_elements(y, dy, [](auto y, auto g) { return g * (1 - y * y); });
#pragma once

#include "autograd/tensor.hpp"

namespace ag::kernels {

/// y[k] = f(x[k]), a new tensor of x's shape and dtype.
template <class F>
Tensor map_elements(const Tensor& x, F f) {
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.data<T>();
    T* y_data = y.data<T>();
    for (std::int64_t k = 0; k < y.numel(); ++k) y_data[k] = f(x_data[k]);
  });
  return y;
}

/// z[k] = f(a[k], b[k]) for a and b of the same numel and dtype (a saved tensor and dy), a new
/// tensor of b's shape.
template <class F>
Tensor zip_elements(const Tensor& a, const Tensor& b, F f) {
  Tensor z = Tensor::empty(b.shape(), b.dtype());
  dispatch(b.dtype(), [&]<class T>() {
    const T* a_data = a.data<T>();
    const T* b_data = b.data<T>();
    T* z_data = z.data<T>();
    for (std::int64_t k = 0; k < z.numel(); ++k) z_data[k] = f(a_data[k], b_data[k]);
  });
  return z;
}

/// w[k] = f(a[k], b[k], c[k]), a new tensor of c's shape: a curvature rule's map of a saved
/// tensor, h and g.
template <class F>
Tensor zip_elements(const Tensor& a, const Tensor& b, const Tensor& c, F f) {
  Tensor w = Tensor::empty(c.shape(), c.dtype());
  dispatch(c.dtype(), [&]<class T>() {
    const T* a_data = a.data<T>();
    const T* b_data = b.data<T>();
    const T* c_data = c.data<T>();
    T* w_data = w.data<T>();
    for (std::int64_t k = 0; k < w.numel(); ++k) w_data[k] = f(a_data[k], b_data[k], c_data[k]);
  });
  return w;
}

}  // namespace ag::kernels
