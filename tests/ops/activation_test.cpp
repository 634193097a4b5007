// relu: hand-computed forward, the [x > 0] mask in backward, gradchecks away from the kink, its
// saved input modified in place.
#include "ops/activation.hpp"

#include <gtest/gtest.h>

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
