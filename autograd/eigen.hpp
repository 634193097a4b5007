// Eigen views of tensors: element-wise math written as whole-array expressions, vectorised by Eigen.
// A view shares the tensor's storage (always 64-byte aligned, see allocator.hpp) and copies nothing.
#pragma once

#include <Eigen/Core>

#include "autograd/tensor.hpp"

namespace ag {

template <class T>
using ArrayView = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Aligned64>;
template <class T>
using ConstArrayView = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Aligned64>;

/// All elements of `t` as a flat Eigen array; throws if T is not t's dtype.
template <class T>
ArrayView<T> as_array(Tensor& t) {
  return ArrayView<T>(t.data<T>(), t.numel());
}
template <class T>
ConstArrayView<T> as_array(const Tensor& t) {
  return ConstArrayView<T>(t.data<T>(), t.numel());
}

}  // namespace ag
