// LeNet-5 (LeCun et al. 1998, with ReLU and max-pooling as is usual today).
#include "models/lenet5.hpp"

#include "ops/ops.hpp"

namespace nn {

LeNet5::LeNet5(ag::Generator& gen)
    : Model({.channels = 1, .height = 28, .width = 28}),
      conv1({.in = 1, .out = 6, .kernel = 5, .padding = 2}, gen),
      conv2({.in = 6, .out = 16, .kernel = 5}, gen),
      fc1({.in = 16 * 5 * 5, .out = 120}, gen),
      fc2({.in = 120, .out = 84}, gen),
      fc3({.in = 84, .out = 10}, gen) {
  register_module("conv1", conv1);
  register_module("conv2", conv2);
  register_module("fc1", fc1);
  register_module("fc2", fc2);
  register_module("fc3", fc3);
}

ag::Variable LeNet5::forward(const ag::Variable& input) const {
  using namespace ag;
  Variable x = max_pool2d(relu(conv1(input)), 2);  // [N, 6, 14, 14]
  x = max_pool2d(relu(conv2(x)), 2);               // [N, 16, 5, 5]
  x = flatten(x);                                  // [N, 400]
  x = relu(fc1(x));                                // [N, 120]
  x = relu(fc2(x));                                // [N, 84]
  return log_softmax(fc3(x), 1);                   // [N, 10]
}

}  // namespace nn
