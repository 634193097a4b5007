// Activation functions: relu.
#include "ops/activation.hpp"

#include "ops/fused.hpp"

namespace ag {

Variable relu(const Variable& x) {
  if (!x.defined()) fail("relu", "undefined input");
  // relu over a deferred conv2d stays deferred, for a max_pool2d to fuse (ops/fused.hpp).
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

}  // namespace ag
