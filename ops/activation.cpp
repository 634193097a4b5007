// Activation functions: relu, tanh, scaled_tanh, sigmoid.
#include "ops/activation.hpp"

#include <cmath>

#include "autograd/eigen.hpp"
#include "ops/fusion/fusion.hpp"
#include "ops/kernels/elementwise.hpp"

// GCC 12 reports the deliberately undefined pass-through operand inside the AVX-512 intrinsics
// of Eigen's vectorised tanh (_mm512_undefined_ps) as "may be used uninitialized" (GCC bug 105593,
// fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace ag {

using kernels::map_elements;
using kernels::zip_elements;

Variable relu(const Variable& x) {
  if (!x.defined()) fail("relu", "undefined input");
  // relu over a deferred conv2d stays deferred, for a max_pool2d to fuse (ops/fusion/fusion.hpp).
  if (Variable fused = fuse_relu(x); fused.defined()) return fused;
  Tensor y = map_elements(x.value(), [](auto v) { return v > 0 ? v : decltype(v)(0); });
  // Saves x (shared, not copied) for the mask [x > 0].
  const SavedTensor saved_x =
      needs_grad({x}) ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  return record(
      std::move(y), "relu", {x},
      [saved_x](const Tensor& dy, const GradMask&) {
        return TensorList{
            zip_elements(saved_x.unpack(), dy, [](auto x, auto g) { return x > 0 ? g : decltype(g)(0); })};
      },
      // Curvature, Gauss-Newton: [x > 0]^2 h.
      [saved_x](const Tensor& h, const Tensor&, const GradMask&) {
        return TensorList{
            zip_elements(saved_x.unpack(), h, [](auto x, auto h) { return x > 0 ? h : decltype(h)(0); })};
      });
}

Variable tanh(const Variable& x) {
  if (!x.defined()) fail("tanh", "undefined input");
  // Eigen's vectorised tanh: libm's is a scalar call per element, and the 1998 LeNet-5 takes
  // 8,000 of them per image.
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() { as_array<T>(y) = as_array<T>(x.value()).tanh(); });
  // Saves the output y (shared with the result): dx = dy * (1 - y^2).
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  return record(
      std::move(y), "tanh", {x},
      [saved_y](const Tensor& dy, const GradMask&) {
        return TensorList{zip_elements(saved_y.unpack(), dy, [](auto y, auto g) { return g * (1 - y * y); })};
      },
      // Curvature, Gauss-Newton: (1 - y^2)^2 h (tanh's own second derivative is dropped).
      [saved_y](const Tensor& h, const Tensor&, const GradMask&) {
        return TensorList{zip_elements(saved_y.unpack(), h, [](auto y, auto h) {
          const auto slope = 1 - y * y;
          return slope * slope * h;
        })};
      });
}

Variable scaled_tanh(const Variable& x, double amplitude, double slope) {
  if (!x.defined()) fail("scaled_tanh", "undefined input");
  if (amplitude == 0) fail("scaled_tanh", "amplitude must not be 0");
  // A scaled tanh over a deferred conv2d stays deferred, for a subsampling2d to fuse
  // (ops/fusion/fusion.hpp).
  if (Variable fused = fuse_scaled_tanh(x, amplitude, slope); fused.defined()) return fused;
  // The same roundings as amplitude * tanh(x * slope) in three ops: each factor rounded to T, the
  // products and tanh element by element.
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    as_array<T>(y) = T(amplitude) * (as_array<T>(x.value()) * T(slope)).tanh();
  });
  // Saves the output y (shared with the result): dy/dx = slope * amplitude * (1 - tanh^2)
  // = (slope / amplitude) * (amplitude^2 - y^2).
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  const auto derivative = [ratio = slope / amplitude, square = amplitude * amplitude](auto y) {
    using T = decltype(y);
    return T(ratio) * (T(square) - y * y);
  };
  return with_attributes(record(
      std::move(y), "scaled_tanh", {x},
      [saved_y, derivative](const Tensor& dy, const GradMask&) {
        return TensorList{
            zip_elements(saved_y.unpack(), dy, [&](auto y, auto g) { return g * derivative(y); })};
      },
      // Curvature, Gauss-Newton: (dy/dx)^2 h.
      [saved_y, derivative](const Tensor& h, const Tensor&, const GradMask&) {
        return TensorList{zip_elements(saved_y.unpack(), h, [&](auto y, auto h) {
          const auto slope = derivative(y);
          return slope * slope * h;
        })};
      }), [&] { return OpAttributes{{"amplitude", amplitude}, {"slope", slope}}; });
}

Variable sigmoid(const Variable& x) {
  if (!x.defined()) fail("sigmoid", "undefined input");
  // e^-|x| <= 1 never overflows: 1 / (1 + e^-x) for x >= 0, and e^x / (1 + e^x) for x < 0,
  // which keeps the digits of a tiny y that 1 - (a number near 1) would lose.
  Tensor y = map_elements(x.value(), [](auto v) {
    const auto e = std::exp(-std::abs(v));
    return v >= 0 ? 1 / (1 + e) : e / (1 + e);
  });
  // Saves the output y (shared with the result): dx = dy * y * (1 - y).
  const SavedTensor saved_y =
      needs_grad({x}) ? SavedTensor(y, SavedTensor::kOutput) : SavedTensor{};
  return record(
      std::move(y), "sigmoid", {x},
      [saved_y](const Tensor& dy, const GradMask&) {
        return TensorList{zip_elements(saved_y.unpack(), dy, [](auto y, auto g) { return g * y * (1 - y); })};
      },
      // Curvature, Gauss-Newton: (y (1 - y))^2 h.
      [saved_y](const Tensor& h, const Tensor&, const GradMask&) {
        return TensorList{zip_elements(saved_y.unpack(), h, [](auto y, auto h) {
          const auto slope = y * (1 - y);
          return slope * slope * h;
        })};
      });
}

}  // namespace ag
