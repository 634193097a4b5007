// LeNet-5 as it is usually built today (ReLU, max-pooling, softmax), as an ordinary model script:
// its gradients come from the tape alone.
#pragma once

#include "models/model.hpp"
#include "models/nn/layers.hpp"

namespace nn {

/// Parameter names and layouts equal PyTorch's state_dict for the same network:
/// conv1.weight [6, 1, 5, 5] ... fc3.bias [10]; 61,706 parameters.
class LeNet5 : public Model {
 public:
  explicit LeNet5(ag::Generator& gen);
  /// x:[N, 1, 28, 28] (normalised) -> log-probabilities [N, 10]
  ag::Variable forward(const ag::Variable& x) const override;
  /// forward ends in log_softmax.
  ag::Variable log_probabilities(const ag::Variable& output) const override { return output; }

  Conv2d conv1;
  Conv2d conv2;
  Linear fc1;
  Linear fc2;
  Linear fc3;
};

}  // namespace nn
