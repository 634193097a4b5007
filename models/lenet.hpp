// LeNet-5, as an ordinary model script: its gradients come from the tape alone.
#pragma once

#include "models/layers.hpp"

namespace nn {

/// Parameter names and layouts equal PyTorch's state_dict for the same network:
/// conv1.weight [6, 1, 5, 5] ... fc3.bias [10]; 61,706 parameters.
class LeNet5 : public Module {
 public:
  explicit LeNet5(ag::Generator& gen);
  /// x:[N, 1, 28, 28] (normalised) -> log-probabilities [N, 10]
  ag::Variable forward(const ag::Variable& x) const;
  ag::Variable operator()(const ag::Variable& x) const { return forward(x); }

  Conv2d conv1;
  Conv2d conv2;
  Linear fc1;
  Linear fc2;
  Linear fc3;
};

}  // namespace nn
