// dropout: a mask drawn from the caller's generator, saved for the backward.
#include "ops/dropout.hpp"

#include <sstream>
#include <string>

namespace ag {

Variable dropout(const Variable& x, double p, bool training, Generator& generator) {
  if (!x.defined()) fail("dropout", "undefined input");
  if (!(p >= 0 && p <= 1)) {  // NaN fails too
    std::ostringstream message;
    message << "p must be in [0, 1], got " << p << " for x of shape " << shape_str(x.shape());
    fail("dropout", message.str());
  }
  if (!training || p == 0) return x;

  // Saved for backward: mask[i] = 1 / (1 - p) where element i is kept, 0 where it is dropped; made
  // here and held by nothing else. Not x.
  Tensor mask(x.shape(), x.dtype());  // zeros: p == 1 keeps nothing and needs no draws
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().data<T>();
    T* m = mask.data<T>();
    T* y_data = y.data<T>();
    const T scale = p < 1 ? static_cast<T>(1 / (1 - p)) : T(0);
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      if (p < 1 && generator.uniform() >= p) m[i] = scale;
      y_data[i] = x_data[i] * m[i];
    }
  });

  return record(std::move(y), "dropout", {x}, [mask](const Tensor& dy, const GradMask&) {
    // dx = dy * mask
    Tensor grad_x = Tensor::empty(dy.shape(), dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      const T* dy_data = dy.data<T>();
      const T* m = mask.data<T>();
      T* dx = grad_x.data<T>();
      for (std::int64_t i = 0; i < dy.numel(); ++i) dx[i] = dy_data[i] * m[i];
    });
    return TensorList{grad_x};
  });
}

}  // namespace ag
