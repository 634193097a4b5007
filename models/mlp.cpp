// The 784-300-100-10 fully connected network.
#include "models/mlp.hpp"

#include "models/nn/layers.hpp"

namespace nn {

Mlp::Mlp(ag::Generator& gen) : Model({.channels = 1, .height = 28, .width = 28}) {
  layers.emplace_back<Flatten>();                                         // [N, 784]
  layers.emplace_back<Linear>(LinearOptions{.in = 28 * 28, .out = 300}, gen);
  layers.emplace_back<Tanh>();                                            // [N, 300]
  layers.emplace_back<Linear>(LinearOptions{.in = 300, .out = 100}, gen);
  layers.emplace_back<Tanh>();                                            // [N, 100]
  layers.emplace_back<Linear>(LinearOptions{.in = 100, .out = 10}, gen);  // logits [N, 10]
  register_module("layers", layers);
}

}  // namespace nn
