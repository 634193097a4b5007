// relu, tanh, scaled_tanh, sigmoid: hand-computed forwards, their gradients, gradchecks (relu's
// away from the kink), saved tensors modified in place, large inputs, and gradcheck catching a
// wrong backward.
#include "ops/activation.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "ops/arithmetic.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

// Values in [-1, -0.1] or [0.1, 1]: central differences at eps 1e-6 never cross the kink at 0.
Tensor away_from_zero(Shape shape, Generator& gen) {
  Tensor t = Tensor::uniform(std::move(shape), 0.1, 1.0, gen, DType::Float64);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (gen.below(2)) t.set(i, -t.at(i));
  return t;
}

}  // namespace

TEST(Relu, ZeroesNegativesAndKeepsPositives) {
  Variable x(Tensor::from({2, 3}, {-2.0, -0.5, 0.0, 0.5, 2.0, 3.0}, DType::Float64));
  Variable y = relu(x);
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{0, 0, 0, 0.5, 2, 3}));
}

TEST(Relu, WorksInFloat32) {
  Variable y = relu(Variable(Tensor::from({3}, std::vector<float>{-1.5f, 0.25f, 4.0f})));
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{0, 0.25, 4}));
}

TEST(Relu, GradientPassesOnlyWhereInputIsPositive) {
  Variable x(Tensor::from({4}, {-1.0, 2.0, 0.0, 3.0}, DType::Float64), true);
  Variable w(Tensor::from({4}, {10.0, 20.0, 30.0, 40.0}, DType::Float64));
  sum(mul(relu(x), w)).backward();
  // At exactly 0 the gradient is 0, as in PyTorch.
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 20, 0, 40}));
}

TEST(Relu, GradMatchesNumericForSeveralShapes) {
  Generator gen(10);
  for (const Shape& shape : std::vector<Shape>{{1}, {7}, {1, 5}, {4, 3}, {2, 3, 5}, {2, 1, 3, 3}}) {
    std::vector<Variable> inputs{Variable(away_from_zero(shape, gen), true)};
    auto result = gradcheck([](const auto& v) { return relu(v[0]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << ": " << result.message;
  }
}

TEST(Relu, InputModifiedInPlaceBeforeBackwardThrows) {
  Variable x(Tensor::from({3}, {-1.0, 2.0, 3.0}, DType::Float64), true, "x");
  Variable y = sum(relu(x));
  x.mutable_value().fill(-5.0);  // would turn the mask off everywhere
  expect_starts_with(thrown_message([&] { y.backward(); }),
                     "relu: input 0 ('x'), saved for backward at version 0, was modified in place "
                     "since (now version 2)");
}

TEST(Relu, InputModifiedInPlaceAfterBackwardIsFine) {
  Variable x(Tensor::from({3}, {-1.0, 2.0, 3.0}, DType::Float64), true, "x");
  sum(relu(x)).backward();
  x.mutable_value().fill(-5.0);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 1, 1}));
}

// ---- tanh ----

TEST(Tanh, MatchesHandValues) {
  Variable y = ag::tanh(variable({2, 2}, {0, 0.5, -1, 20}));
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  // tanh(0.5) = (e - 1) / (e + 1), tanh(-1) = (1 - e^2) / (1 + e^2).
  const double e = std::exp(1.0);
  expect_values(y, {0, (e - 1) / (e + 1), (1 - e * e) / (1 + e * e), 1});
}

TEST(Tanh, GradientIsOneMinusOutputSquared) {
  Variable x = variable({3}, {0, 0.5, -2});
  sum(ag::tanh(x)).backward();
  const double t = std::tanh(0.5), u = std::tanh(-2.0);
  expect_values(x.grad(), Shape{3}, {1, 1 - t * t, 1 - u * u});
}

TEST(Tanh, SaturatesWithoutNanForLargeInputs) {
  Variable x = variable({2}, {1000, -1000});
  Variable y = ag::tanh(x);
  expect_values(y, {1, -1});
  sum(y).backward();
  expect_values(x.grad(), Shape{2}, {0, 0});
}

TEST(Tanh, WorksInFloat32) {
  Variable y = ag::tanh(Variable(Tensor::from({2}, std::vector<float>{0.0f, 0.5f})));
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().data<float>()[1], std::tanh(0.5f));
}

TEST(Tanh, UndefinedInputThrowsNamingTheOp) {
  EXPECT_EQ(thrown_message([] { ag::tanh(Variable{}); }), "tanh: undefined input");
}

TEST(Tanh, GradMatchesNumericForSeveralShapes) {
  Generator gen(11);
  for (const Shape& shape :
       std::vector<Shape>{{}, {1}, {7}, {1, 5}, {4, 3}, {2, 3, 5}, {2, 1, 3, 3}}) {
    std::vector<Variable> inputs{random_variable(shape, gen, true, -3, 3)};
    auto result = gradcheck([](const auto& v) { return ag::tanh(v[0]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << ": " << result.message;
  }
}

TEST(Tanh, ScaledTanhComposesWithOperators) {
  // LeCun's 1.7159 tanh(2x / 3), as a network writes it.
  Variable x = variable({2}, {0.75, -1.5});
  Variable y = 1.7159 * ag::tanh(x * (2.0 / 3));
  expect_values(y, {1.7159 * std::tanh(0.75 * (2.0 / 3)), 1.7159 * std::tanh(-1.5 * (2.0 / 3))});
  Generator gen(12);
  std::vector<Variable> inputs{random_variable({3, 4}, gen, true, -3, 3)};
  auto result =
      gradcheck([](const auto& v) { return 1.7159 * ag::tanh(v[0] * (2.0 / 3)); }, inputs);
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(Tanh, SavesItsOutputSoItsInputMayBeModified) {
  Variable x = variable({2}, {0.5, -1});
  Variable y = sum(ag::tanh(x));
  x.mutable_value().fill(3.0);
  y.backward();
  const double t = std::tanh(0.5), u = std::tanh(-1.0);
  expect_values(x.grad(), Shape{2}, {1 - t * t, 1 - u * u});
}

namespace {

// tanh with a backward that is wrong on purpose: dy * (1 - y) instead of dy * (1 - y^2).
Variable tanh_with_wrong_backward(const Variable& x) {
  Tensor y(x.shape(), DType::Float64);
  for (std::int64_t k = 0; k < y.numel(); ++k) y.set(k, std::tanh(x.value().at(k)));
  const SavedTensor saved_y(y, SavedTensor::kOutput);
  return record(std::move(y), "tanh", {x}, [saved_y](const Tensor& dy, const GradMask&) {
    const Tensor& y_value = saved_y.unpack();
    Tensor dx(dy.shape(), DType::Float64);
    for (std::int64_t k = 0; k < dx.numel(); ++k) dx.set(k, dy.at(k) * (1 - y_value.at(k)));
    return TensorList{dx};
  });
}

}  // namespace

TEST(Tanh, GradcheckCatchesAWrongBackward) {
  std::vector<Variable> inputs{variable({2, 2}, {0.5, -1, 1.5, 0.25})};
  auto result = gradcheck([](const auto& v) { return tanh_with_wrong_backward(v[0]); }, inputs);
  EXPECT_FALSE(result.ok);
  // Element 0: analytic 1 - tanh(0.5) against numeric 1 - tanh(0.5)^2.
  expect_starts_with(result.message,
                     "gradcheck: Jacobian mismatch at input 0 of shape [2, 2], element 0, output "
                     "element 0: analytic 0.537882");
}

// ---- scaled_tanh ----

TEST(ScaledTanh, MatchesHandValues) {
  Variable y = scaled_tanh(variable({3}, {0, 0.75, -30}), 1.7159, 2.0 / 3);
  expect_values(y, {0, 1.7159 * std::tanh(0.75 * (2.0 / 3)), -1.7159});
}

TEST(ScaledTanh, EqualsTheThreeOpsBitForBit) {
  // amplitude * tanh(x * slope) as the 1998 LeNet-5 wrote it, in both dtypes.
  Generator gen(14);
  for (const DType dtype : {DType::Float32, DType::Float64}) {
    const Variable x(Tensor::uniform({3, 37}, -4, 4, gen, dtype));
    const std::vector<double> one = scaled_tanh(x, 1.7159, 2.0 / 3).value().to_vector();
    const std::vector<double> three = (1.7159 * ag::tanh(x * (2.0 / 3))).value().to_vector();
    EXPECT_EQ(one, three) << dtype_name(dtype);
  }
}

TEST(ScaledTanh, GradientIsSlopeTimesAmplitudeTimesOneMinusTanhSquared) {
  Variable x = variable({3}, {0, 0.5, -2});
  sum(scaled_tanh(x, 2.0, 0.25)).backward();
  const auto expected = [](double v) {
    const double t = std::tanh(0.25 * v);
    return 2.0 * 0.25 * (1 - t * t);
  };
  const std::vector<double> grad = x.grad().to_vector();
  for (std::size_t i = 0; i < grad.size(); ++i)
    EXPECT_NEAR(grad[i], expected(std::vector<double>{0, 0.5, -2}[i]), 1e-15) << i;
}

TEST(ScaledTanh, GradMatchesNumericForSeveralShapesAndScales) {
  Generator gen(15);
  for (const auto& [amplitude, slope] :
       std::vector<std::pair<double, double>>{{1.7159, 2.0 / 3}, {-0.5, 3}, {2, -1}, {1, 0}}) {
    for (const Shape& shape : std::vector<Shape>{{}, {5}, {2, 3, 4}}) {
      std::vector<Variable> inputs{random_variable(shape, gen, true, -3, 3)};
      auto result = gradcheck(
          [&](const auto& v) { return scaled_tanh(v[0], amplitude, slope); }, inputs);
      EXPECT_TRUE(result.ok) << amplitude << ", " << slope << ", " << shape_str(shape) << ": "
                             << result.message;
    }
  }
}

TEST(ScaledTanh, SavesItsOutputSoItsInputMayBeModified) {
  Variable x = variable({2}, {0.5, -1});
  Variable y = sum(scaled_tanh(x, 1.5, 2));
  x.mutable_value().fill(3.0);
  y.backward();
  // The op computes the slope from y as (2 / 1.5) (1.5^2 - y^2): the same number as 3 (1 - t^2)
  // to a few roundings, which an unoptimised build does not contract as an optimised one does.
  // With x's new value (3) instead, the slopes would be 0.0074 and 0.00002.
  const double t = std::tanh(1.0), u = std::tanh(-2.0);
  const std::vector<double> grad = x.grad().to_vector();
  ASSERT_EQ(grad.size(), 2u);
  EXPECT_NEAR(grad[0], 3 * (1 - t * t), 1e-14);
  EXPECT_NEAR(grad[1], 3 * (1 - u * u), 1e-14);
}

TEST(ScaledTanh, ErrorsNameTheOp) {
  EXPECT_EQ(thrown_message([] { scaled_tanh(Variable{}, 1, 1); }), "scaled_tanh: undefined input");
  EXPECT_EQ(thrown_message([] { scaled_tanh(variable({1}, {0.5}), 0, 1); }),
            "scaled_tanh: amplitude must not be 0");
}

// ---- sigmoid ----

TEST(Sigmoid, MatchesHandValues) {
  Variable y = sigmoid(variable({3}, {0, 2, -2}));
  const double e2 = std::exp(2.0);
  expect_values(y, {0.5, e2 / (1 + e2), 1 / (1 + e2)});
}

TEST(Sigmoid, GradientIsOutputTimesOneMinusOutput) {
  Variable x = variable({2}, {0, 1});
  sum(sigmoid(x)).backward();
  const double s = 1 / (1 + std::exp(-1.0));
  expect_values(x.grad(), Shape{2}, {0.25, s * (1 - s)});
}

TEST(Sigmoid, IsStableForLargeMagnitudes) {
  // e^1000 overflows; and 1 - 1 / (1 + e^-x) would round sigmoid(-40) to 0.
  Variable x = variable({4}, {1000, -1000, 40, -40});
  Variable y = sigmoid(x);
  expect_values(y, {1, 0, 1 / (1 + std::exp(-40.0)), std::exp(-40.0) / (1 + std::exp(-40.0))});
  sum(y).backward();
  for (double g : x.grad().to_vector()) EXPECT_FALSE(std::isnan(g));
  EXPECT_EQ(x.grad().at(0), 0);
  EXPECT_EQ(x.grad().at(1), 0);
}

TEST(Sigmoid, WorksInFloat32) {
  Variable y = sigmoid(Variable(Tensor::from({3}, std::vector<float>{0.0f, 200.0f, -200.0f})));
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{0.5, 1, 0}));
}

TEST(Sigmoid, UndefinedInputThrowsNamingTheOp) {
  EXPECT_EQ(thrown_message([] { sigmoid(Variable{}); }), "sigmoid: undefined input");
}

TEST(Sigmoid, GradMatchesNumericForSeveralShapes) {
  Generator gen(13);
  for (const Shape& shape :
       std::vector<Shape>{{}, {1}, {7}, {1, 5}, {4, 3}, {2, 3, 5}, {2, 1, 3, 3}}) {
    std::vector<Variable> inputs{random_variable(shape, gen, true, -6, 6)};
    auto result = gradcheck([](const auto& v) { return sigmoid(v[0]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << ": " << result.message;
  }
}
