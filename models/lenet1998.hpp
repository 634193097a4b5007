// LeNet-5 as LeCun, Bottou, Bengio and Haffner published it in 1998 ("Gradient-Based Learning
// Applied to Document Recognition", Proc. IEEE 86(11), section II-B), as an ordinary model script:
// a scaled tanh after every layer, subsampling layers with a trainable coefficient and bias per
// map, C3 connected by Table I, and Euclidean RBF output units with fixed prototypes. Trained by
// stochastic diagonal Levenberg-Marquardt (nn::SDLM with the curvature pass); docs/lenet1998.md.
#pragma once

#include <array>
#include <cstdint>

#include "models/model.hpp"
#include "models/nn/layers.hpp"

namespace nn {

/// y = coefficient[c] * (the sum of each 2x2 window of map c) + bias[c], the paper's S2 and S4.
/// weight:[C] (the coefficients) and bias:[C]. x:[N, C, H, W] -> [N, C, H/2, W/2].
class Subsampling : public Module {
 public:
  explicit Subsampling(std::int64_t channels);
  ag::Variable forward(const ag::Variable& x) const override;

  ag::Variable weight;  // [C]
  ag::Variable bias;    // [C]
};

/// The paper's criteria on the RBF penalties y:[N, 10] (section II-C).
enum class Criterion {
  MaximumLikelihood,  // eq. 8: E = mean of y_D, the correct class's penalty
  Discriminative,     // eq. 9: E = mean of y_D + log(exp(-j) + sum_i exp(-y_i))
};

/// Parameter names as a PyTorch implementation would have them: c1.weight [6, 1, 5, 5], c1.bias,
/// s2.weight [6], s2.bias, c3.weight [16, 6, 5, 5] (zero off Table I), c3.bias, s4.weight [16],
/// s4.bias, c5.weight [120, 16, 5, 5], c5.bias, f6.weight [84, 120], f6.bias; the buffer
/// output.centers [10, 84]. 60,000 trainable parameters, 340,908 connections.
class LeNet1998 : public Model {
 public:
  explicit LeNet1998(ag::Generator& gen, Criterion criterion = Criterion::Discriminative);

  /// x:[N, 1, 28, 28], grey level p given as -0.1 + 1.275 p / 255 -> RBF penalties y:[N, 10]
  ag::Variable forward(const ag::Variable& x) const override;
  /// The criterion chosen at construction, over the penalties.
  ag::Variable loss(const ag::Variable& output, std::span<const std::int64_t> targets) const override;
  /// log_softmax(-y): the smallest penalty is the most probable class.
  ag::Variable log_probabilities(const ag::Variable& output) const override;
  /// Weights off Table I are not parameters: they are zero and stay zero.
  std::int64_t parameter_count() const override;
  /// Multiply-adds per image, each bias counted as one, as the paper counts them.
  std::int64_t connections() const override;

  /// The constant j of eq. 9.
  static constexpr double kJ = 10.0;

  Conv2d c1;
  Subsampling s2;
  Conv2d c3;
  Subsampling s4;
  Conv2d c5;
  Linear f6;
  /// The output layer's constant: the digit prototypes of Fig. 3 (+1 ink, -1 background).
  class RbfPrototypes : public Module {
   public:
    RbfPrototypes();
    ag::Variable centers;  // [10, 84]
  } output;

 private:
  Criterion criterion_;
};

}  // namespace nn
