// The fully connected network of LeCun et al. 1998 (Table "3-layer NN, 300+100 hidden units"):
// 28x28 inputs, two hidden layers of 300 and 100 tanh units, 10 outputs. A Sequential, so its
// weights are named as a PyTorch nn.Sequential's ("layers.1.weight" [300, 784] ...).
#pragma once

#include "models/model.hpp"
#include "models/nn/sequential.hpp"

namespace nn {

class Mlp : public Model {
 public:
  explicit Mlp(ag::Generator& gen);
  /// x:[N, 1, 28, 28] -> logits [N, 10]
  ag::Variable forward(const ag::Variable& x) const override { return layers(x); }

  Sequential layers;
};

}  // namespace nn
