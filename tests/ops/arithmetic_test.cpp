// add, mul (with broadcasting), sum and mean: hand-computed forwards, gradients reduced to the
// input shapes, gradchecks, and inputs modified in place after the forward.
#include "ops/arithmetic.hpp"

#include <gtest/gtest.h>

#include "autograd/gradcheck.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

TEST(BroadcastShapes, AlignsFromTheRightAndStretchesOnes) {
  EXPECT_EQ(broadcast_shapes({2, 3}, {3}, "add"), (Shape{2, 3}));
  EXPECT_EQ(broadcast_shapes({2, 1}, {1, 3}, "add"), (Shape{2, 3}));
  EXPECT_EQ(broadcast_shapes({4, 3, 5, 6}, {3, 1, 1}, "add"), (Shape{4, 3, 5, 6}));
  EXPECT_EQ(broadcast_shapes({}, {2, 2}, "add"), (Shape{2, 2}));
  EXPECT_EQ(broadcast_shapes({0, 1}, {1, 4}, "add"), (Shape{0, 4}));
}

TEST(BroadcastShapes, IncompatibleShapesThrowNamingOpAndShapes) {
  EXPECT_EQ(thrown_message([] { broadcast_shapes({2, 3}, {2}, "mul"); }),
            "mul: cannot broadcast [2, 3] with [2]");
}

TEST(Add, SameShapeIsElementwise) {
  Variable y = add(variable({2, 2}, {1, 2, 3, 4}), variable({2, 2}, {10, 20, 30, 40}));
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  expect_values(y, {11, 22, 33, 44});
}

TEST(Add, BiasRowBroadcastsOverBatch) {
  Variable y = add(variable({2, 3}, {1, 2, 3, 4, 5, 6}), variable({3}, {10, 20, 30}));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  expect_values(y, {11, 22, 33, 14, 25, 36});
}

TEST(Add, ColumnPlusRowGivesOuterSum) {
  Variable y = add(variable({2, 1}, {1, 2}), variable({1, 3}, {10, 20, 30}));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  expect_values(y, {11, 21, 31, 12, 22, 32});
}

TEST(Add, ChannelBiasBroadcastsOverBatchAndPixels) {
  // [N=2, C=2, H=1, W=2] + [C=2, 1, 1]
  Variable y = add(variable({2, 2, 1, 2}, {1, 2, 3, 4, 5, 6, 7, 8}), variable({2, 1, 1}, {100, 200}));
  EXPECT_EQ(y.shape(), (Shape{2, 2, 1, 2}));
  expect_values(y, {101, 102, 203, 204, 105, 106, 207, 208});
}

TEST(Add, ScalarBroadcastsToAnyShape) {
  Variable y = add(variable({}, {0.5}), variable({3}, {1, 2, 3}));
  expect_values(y, {1.5, 2.5, 3.5});
}

TEST(Add, WorksInFloat32) {
  Variable a(Tensor::from({2}, std::vector<float>{1.5f, 2.5f}));
  Variable b(Tensor::from({1}, std::vector<float>{1.0f}));
  Variable y = add(a, b);
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().data<float>()[0], 2.5f);
  EXPECT_EQ(y.value().data<float>()[1], 3.5f);
}

TEST(Add, DtypeMismatchThrowsNamingShapesAndDtypes) {
  Variable a(Tensor::zeros({2}, DType::Float32));
  Variable b(Tensor::zeros({2}, DType::Float64));
  EXPECT_EQ(thrown_message([&] { add(a, b); }),
            "add: dtype mismatch: [2] float32 with [2] float64");
}

TEST(Add, IncompatibleShapesThrow) {
  Variable a = variable({2, 3}, std::vector<double>(6)), b = variable({4}, {1, 2, 3, 4});
  EXPECT_EQ(thrown_message([&] { add(a, b); }),
            "add: cannot broadcast [2, 3] with [4]");
}

TEST(Add, GradientOfBroadcastInputIsSummedBackToItsShape) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable b = variable({3}, {0, 0, 0});
  // d/db sum(w * (x + b)) = sum over rows of w.
  Variable w = variable({2, 3}, {1, 2, 3, 4, 5, 6}, false);
  sum(mul(w, add(x, b))).backward();
  EXPECT_EQ(b.grad().shape(), (Shape{3}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

TEST(Add, GradMatchesNumericForSeveralShapes) {
  Generator gen(1);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1}, {1}},       {{3, 5}, {3, 5}}, {{1, 5}, {5}},         {{4, 3}, {3}},
      {{2, 1}, {1, 3}}, {{}, {2, 3}},     {{2, 3, 2, 3}, {3, 1, 1}}, {{3, 1, 5}, {1, 4, 1}}};
  for (const auto& [shape_a, shape_b] : cases) {
    std::vector<Variable> inputs{random_variable(shape_a, gen), random_variable(shape_b, gen)};
    auto result = gradcheck([](const auto& v) { return add(v[0], v[1]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape_a) << " + " << shape_str(shape_b) << ": "
                           << result.message;
  }
}

TEST(Mul, BroadcastMultipliesHandValues) {
  Variable y = mul(variable({2, 2}, {1, 2, 3, 4}), variable({2}, {10, -1}));
  expect_values(y, {10, -2, 30, -4});
}

TEST(Mul, GradientsAreTheOtherFactorReduced) {
  Variable a = variable({2, 2}, {1, 2, 3, 4});
  Variable b = variable({2}, {10, -1});
  sum(mul(a, b)).backward();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{10, -1, 10, -1}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{4, 6}));  // column sums of a
}

TEST(Mul, SquareOfOneInputGetsBothTerms) {
  Variable x = variable({2}, {3, -2});
  sum(mul(x, x)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{6, -4}));
}

TEST(Mul, GradMatchesNumericForSeveralShapes) {
  Generator gen(2);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1}, {1}},    {{3, 5}, {3, 5}},     {{4, 3}, {3}},           {{2, 1}, {1, 3}},
      {{}, {2, 3}},  {{2, 3, 2, 3}, {3, 1, 1}}, {{3, 1, 5}, {1, 4, 1}}};
  for (const auto& [shape_a, shape_b] : cases) {
    std::vector<Variable> inputs{random_variable(shape_a, gen), random_variable(shape_b, gen)};
    auto result = gradcheck([](const auto& v) { return mul(v[0], v[1]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape_a) << " * " << shape_str(shape_b) << ": "
                           << result.message;
  }
}

TEST(Mul, SavesOnlyTheFactorAGradientNeeds) {
  // x requires grad, c does not: dx = dy * c needs c, and nothing needs x.
  Variable x = variable({3}, {1, 2, 3});
  Variable c = variable({3}, {4, 5, 6}, false);
  Variable y = mul(x, c);
  EXPECT_TRUE(x.value().is_unique());
  EXPECT_FALSE(c.value().is_unique());
}

TEST(Mul, SavesNothingUnderNoGrad) {
  Variable x = variable({3}, {1, 2, 3});
  Variable c = variable({3}, {4, 5, 6});
  NoGradGuard no_grad;
  Variable y = mul(x, c);
  EXPECT_TRUE(y.is_leaf());
  EXPECT_TRUE(x.value().is_unique());
  EXPECT_TRUE(c.value().is_unique());
}

TEST(Sum, AddsEverythingIntoAScalar) {
  Variable y = sum(variable({2, 3}, {1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_DOUBLE_EQ(y.value().item(), 21);
}

TEST(Mean, DividesTheSumByTheCount) {
  Variable x = variable({2, 2}, {1, 2, 3, 6});
  Variable y = mean(x);
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_DOUBLE_EQ(y.value().item(), 3);
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0.25, 0.25, 0.25, 0.25}));
}

TEST(Mean, OfEmptyTensorThrows) {
  EXPECT_THROW(mean(Variable(Tensor::zeros({0, 3}, DType::Float64), true)),
               std::invalid_argument);
}

TEST(SumAndMean, GradMatchNumeric) {
  Generator gen(3);
  for (const Shape& shape : std::vector<Shape>{{}, {1}, {5}, {2, 3, 4}}) {
    std::vector<Variable> inputs{random_variable(shape, gen)};
    auto s = gradcheck([](const auto& v) { return sum(v[0]); }, inputs);
    EXPECT_TRUE(s.ok) << "sum " << shape_str(shape) << ": " << s.message;
    auto m = gradcheck([](const auto& v) { return mean(v[0]); }, inputs);
    EXPECT_TRUE(m.ok) << "mean " << shape_str(shape) << ": " << m.message;
  }
}

// ---- Inputs modified in place between forward and backward ----

TEST(Mul, SavedFactorModifiedInPlaceBeforeBackwardThrows) {
  Variable x = variable({3}, {1, 2, 3});
  Variable c(Tensor::from({3}, {4.0, 5.0, 6.0}, DType::Float64), false, "scale");
  Variable y = sum(mul(x, c));
  c.mutable_value().add_(Tensor::ones({3}, DType::Float64));
  expect_starts_with(thrown_message([&] { y.backward(); }),
                     "mul: input 1 ('scale'), saved for backward at version 0, was modified in "
                     "place since (now version 2); run backward before modifying it");
}

TEST(Mul, FactorThatWasNotSavedMayBeModified) {
  // Only c is saved (dx = dy * c); x is not, so changing it does not change any gradient.
  Variable x = variable({3}, {1, 2, 3});
  Variable c = variable({3}, {4, 5, 6}, false);
  Variable y = sum(mul(x, c));
  x.mutable_value().fill(100.0);
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{4, 5, 6}));
}

TEST(AddSumMean, SaveNothingSoTheirInputsMayBeModified) {
  Variable a = variable({2}, {1, 2}), b = variable({2}, {3, 4});
  Variable y = add(sum(add(a, b)), mean(b));
  a.mutable_value().fill(-1.0);
  b.mutable_value().set(0, 9.0);
  y.backward();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{1, 1}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{1.5, 1.5}));
}
