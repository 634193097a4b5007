// Activation functions: relu, tanh, sigmoid.
#include "ops/activation.hpp"

#include <cmath>

#include "ops/fusion/fusion.hpp"

namespace ag {

Variable relu(const Variable& x) {
  if (!x.defined()) fail("relu", "undefined input");
  // relu over a deferred conv2d stays deferred, for a max_pool2d to fuse (ops/fusion/fusion.hpp).
  if (Variable fused = fuse_relu(x); fused.defined()) return fused;
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().data<T>();
    T* y_data = y.data<T>();
    for (std::int64_t i = 0; i < y.numel(); ++i) y_data[i] = x_data[i] > T(0) ? x_data[i] : T(0);
  });
  // Saves x (shared, not copied) for the mask [x > 0].
  const SavedTensor saved_x =
      needs_grad({x}) ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  return record(std::move(y), "relu", {x}, [saved_x](const Tensor& dy, const GradMask&) {
    const Tensor& x_value = saved_x.unpack();
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      const T* x_data = x_value.data<T>();
      const T* dy_data = dy.data<T>();
      T* dx_data = dx.data<T>();
      for (std::int64_t i = 0; i < dx.numel(); ++i)
        dx_data[i] = x_data[i] > T(0) ? dy_data[i] : T(0);
    });
    return TensorList{dx};
  });
}

Variable tanh(const Variable& x) {
  if (!x.defined()) fail("tanh", "undefined input");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().data<T>();
    T* y_data = y.data<T>();
    for (std::int64_t i = 0; i < y.numel(); ++i) y_data[i] = std::tanh(x_data[i]);
  });
  // Saves the output y (shared with the result): dx = dy * (1 - y^2).
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  return record(std::move(y), "tanh", {x}, [saved_y](const Tensor& dy, const GradMask&) {
    const Tensor& y_value = saved_y.unpack();
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      const T* y_data = y_value.data<T>();
      const T* dy_data = dy.data<T>();
      T* dx_data = dx.data<T>();
      for (std::int64_t i = 0; i < dx.numel(); ++i)
        dx_data[i] = dy_data[i] * (T(1) - y_data[i] * y_data[i]);
    });
    return TensorList{dx};
  });
}

Variable sigmoid(const Variable& x) {
  if (!x.defined()) fail("sigmoid", "undefined input");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().data<T>();
    T* y_data = y.data<T>();
    // e^-|x| <= 1 never overflows: 1 / (1 + e^-x) for x >= 0, and e^x / (1 + e^x) for x < 0,
    // which keeps the digits of a tiny y that 1 - (a number near 1) would lose.
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      const T e = std::exp(-std::abs(x_data[i]));
      y_data[i] = x_data[i] >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
  });
  // Saves the output y (shared with the result): dx = dy * y * (1 - y).
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  return record(std::move(y), "sigmoid", {x}, [saved_y](const Tensor& dy, const GradMask&) {
    const Tensor& y_value = saved_y.unpack();
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      const T* y_data = y_value.data<T>();
      const T* dy_data = dy.data<T>();
      T* dx_data = dx.data<T>();
      for (std::int64_t i = 0; i < dx.numel(); ++i)
        dx_data[i] = dy_data[i] * y_data[i] * (T(1) - y_data[i]);
    });
    return TensorList{dx};
  });
}

}  // namespace ag
