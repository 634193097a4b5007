// Shape ops: reshape and flatten, views that share storage with their input.
#include "ops/shape.hpp"

#include <algorithm>
#include <string>

namespace ag {

Variable reshape(const Variable& x, Shape shape) {
  if (!x.defined()) fail("reshape", "undefined input");
  Tensor y = x.value().reshape(std::move(shape));  // a view; throws naming reshape and both shapes
  // Saves only x's shape.
  return record(std::move(y), "reshape", {x},
                [x_shape = x.shape()](const Tensor& dy, const GradMask&) {
                  return TensorList{dy.reshape(x_shape)};
                });
}

Variable flatten(const Variable& x, std::int64_t start_dim) {
  if (!x.defined()) fail("flatten", "undefined input");
  const Shape& shape = x.shape();
  const auto rank = static_cast<std::int64_t>(shape.size());
  // A 0-d tensor flattens to [1] from start_dim 0 or -1, as in PyTorch.
  const std::int64_t rank_or_one = std::max<std::int64_t>(rank, 1);
  if (start_dim < -rank_or_one || start_dim >= rank_or_one)
    fail("flatten", "start_dim " + std::to_string(start_dim) + " out of range for shape " +
                        shape_str(shape));
  if (start_dim < 0) start_dim += rank_or_one;
  Shape flat(shape.begin(), shape.begin() + std::min(start_dim, rank));
  std::int64_t collapsed = 1;
  for (std::int64_t d = start_dim; d < rank; ++d) collapsed *= shape[static_cast<std::size_t>(d)];
  flat.push_back(collapsed);
  return reshape(x, std::move(flat));
}

}  // namespace ag
