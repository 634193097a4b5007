// sum, mean (over everything and over dims) and logsumexp: hand-computed forwards, PyTorch's dim
// rules (negative, empty list, keepdim, errors), double accumulation in float32, gradchecks.
#include "ops/reduce.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "ops/arithmetic.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

// [2, 3, 4] holding 1, 2, ..., 24.
Variable counting_2x3x4() {
  std::vector<double> values(24);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i + 1);
  return variable({2, 3, 4}, values);
}

std::string dims_str(const DimList& dims) { return shape_str(Shape(dims.begin(), dims.end())); }

}  // namespace

// ---- sum and mean of all elements ----

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
  EXPECT_EQ(thrown_message([] { mean(Variable(Tensor::zeros({0, 3}, DType::Float64), true)); }),
            "mean: mean of an empty tensor of shape [0, 3]");
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

// ---- sum and mean over dims ----

TEST(SumOverDims, AddsAlongOneDimension) {
  Variable x = counting_2x3x4();
  Variable y = sum(x, {1});
  expect_values(y.value(), Shape{2, 4}, {15, 18, 21, 24, 51, 54, 57, 60});
  expect_values(sum(x, {2}).value(), Shape{2, 3}, {10, 26, 42, 58, 74, 90});
  expect_values(sum(x, {0}).value(), Shape{3, 4},
                {14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36});
}

TEST(SumOverDims, AddsAlongDimensionsThatAreNotAdjacent) {
  // Over {0, 2}: for each of the 3 middle indices, the 8 values of both batches' rows.
  Variable y = sum(counting_2x3x4(), {0, 2});
  expect_values(y.value(), Shape{3}, {10 + 58, 26 + 74, 42 + 90});
}

TEST(SumOverDims, NegativeDimsCountFromTheEnd) {
  Variable x = counting_2x3x4();
  expect_values(sum(x, {-1}).value(), Shape{2, 3}, sum(x, {2}).value().to_vector());
  expect_values(sum(x, {-3, -1}).value(), Shape{3}, sum(x, {0, 2}).value().to_vector());
}

TEST(SumOverDims, KeepdimLeavesReducedDimensionsAsOnes) {
  Variable x = counting_2x3x4();
  expect_values(sum(x, {1}, /*keepdim=*/true).value(), Shape{2, 1, 4},
                {15, 18, 21, 24, 51, 54, 57, 60});
  expect_values(sum(x, {0, 2}, /*keepdim=*/true).value(), Shape{1, 3, 1}, {68, 100, 132});
}

TEST(SumOverDims, EmptyDimListReducesEverything) {
  // As in PyTorch: x.sum(dim=[]) is x.sum().
  Variable x = counting_2x3x4();
  expect_values(sum(x, {}).value(), Shape{}, {300});
  expect_values(sum(x, {}, /*keepdim=*/true).value(), Shape{1, 1, 1}, {300});
}

TEST(SumOverDims, ZeroDimTensorTakesDimZeroOrMinusOne) {
  Variable x = variable({}, {2.5});
  expect_values(sum(x, {0}).value(), Shape{}, {2.5});
  expect_values(sum(x, {-1}, /*keepdim=*/true).value(), Shape{}, {2.5});
}

TEST(SumOverDims, SizeOneAndSizeZeroDimensions) {
  expect_values(sum(variable({3, 1}, {1, 2, 3}), {1}).value(), Shape{3}, {1, 2, 3});
  // Summing over a dimension of size 0 gives zeros; keeping one of size 0 gives an empty result.
  Variable empty(Tensor::zeros({2, 0}, DType::Float64), true);
  expect_values(sum(empty, {1}).value(), Shape{2}, {0, 0});
  expect_values(sum(empty, {0}).value(), Shape{0}, {});
}

TEST(SumOverDims, GradientIsDyCopiedAlongTheReducedDimension) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable w = variable({2}, {10, 20}, false);
  sum(mul(sum(x, {1}), w)).backward();
  expect_values(x.grad(), Shape{2, 3}, {10, 10, 10, 20, 20, 20});
}

TEST(SumOverDims, Float32IsAccumulatedInDouble) {
  // 10^6 values 0.1f along the summed dimension: a float accumulator drifts by about 1000.
  const std::int64_t n = 1'000'000;
  Variable x(Tensor::full({2, n}, 0.1, DType::Float32));
  Variable y = sum(x, {1});
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_NEAR(y.value().at(0), 100000.0, 0.01);
  EXPECT_NEAR(y.value().at(1), 100000.0, 0.01);
  Variable m = mean(x, {-1}, /*keepdim=*/true);
  EXPECT_EQ(m.shape(), (Shape{2, 1}));
  EXPECT_NEAR(m.value().at(0), 0.1, 1e-8);
}

TEST(SumOverDims, DimOutOfRangeThrowsNamingOpDimsAndShape) {
  Variable x = variable({2, 3}, std::vector<double>(6));
  EXPECT_EQ(thrown_message([&] { sum(x, {2}); }),
            "sum: dim 2 out of range in dims [2] for x of shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { mean(x, {0, -3}); }),
            "mean: dim -3 out of range in dims [0, -3] for x of shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { sum(variable({}, {1}), {1}); }),
            "sum: dim 1 out of range in dims [1] for x of shape []");
}

TEST(SumOverDims, RepeatedDimThrowsNamingOpDimsAndShape) {
  Variable x = variable({2, 3}, std::vector<double>(6));
  EXPECT_EQ(thrown_message([&] { sum(x, {1, -1}); }),
            "sum: dimension 1 appears more than once in dims [1, -1] for x of shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { mean(x, {0, 0}, true); }),
            "mean: dimension 0 appears more than once in dims [0, 0] for x of shape [2, 3]");
}

TEST(MeanOverDims, DividesEachSumByItsCount) {
  Variable x = counting_2x3x4();
  expect_values(mean(x, {1}).value(), Shape{2, 4}, {5, 6, 7, 8, 17, 18, 19, 20});
  expect_values(mean(x, {0, 2}, /*keepdim=*/true).value(), Shape{1, 3, 1}, {8.5, 12.5, 16.5});
  expect_values(mean(x, {}).value(), Shape{}, {12.5});
}

TEST(MeanOverDims, GradientIsDyOverTheCount) {
  Variable x = variable({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  sum(mean(x, {-1})).backward();
  expect_values(x.grad(), Shape{2, 4}, std::vector<double>(8, 0.25));
}

TEST(MeanOverDims, OverNoElementsThrowsNamingOpAndShape) {
  Variable x(Tensor::zeros({2, 0}, DType::Float64), true);
  EXPECT_EQ(thrown_message([&] { mean(x, {1}); }),
            "mean: mean over no elements: dims [1] of x of shape [2, 0]");
  EXPECT_EQ(mean(x, {0}).shape(), Shape{0});  // 2 elements into each of none
}

TEST(SumAndMeanOverDims, GradMatchNumericForSeveralShapesAndDims) {
  Generator gen(11);
  struct Case {
    Shape shape;
    DimList dims;
  };
  const std::vector<Case> cases = {
      {{1}, {0}},          {{5}, {-1}},           {{1, 5}, {0}},         {{1, 5}, {1}},
      {{4, 3}, {0}},       {{4, 3}, {-1}},        {{4, 3}, {}},          {{3, 1, 5}, {1}},
      {{2, 3, 5}, {0, 2}}, {{2, 3, 5}, {-2}},     {{2, 3, 5}, {2, 0, 1}}, {{2, 3, 2, 3}, {1, 3}},
      {{2, 3, 2, 3}, {-4, -3}}, {{}, {0}}};
  for (const Case& c : cases)
    for (bool keepdim : {false, true}) {
      const Shape& shape = c.shape;
      const DimList& dims = c.dims;
      const std::string at = shape_str(shape) + " over " + dims_str(dims) +
                             (keepdim ? " keepdim" : "");
      std::vector<Variable> inputs{random_variable(shape, gen)};
      auto s = gradcheck([&](const auto& v) { return sum(v[0], dims, keepdim); }, inputs);
      EXPECT_TRUE(s.ok) << "sum " << at << ": " << s.message;
      auto m = gradcheck([&](const auto& v) { return mean(v[0], dims, keepdim); }, inputs);
      EXPECT_TRUE(m.ok) << "mean " << at << ": " << m.message;
    }
}

// ---- logsumexp ----

TEST(Logsumexp, MatchesHandComputedValues) {
  // log(e^1 + e^2 + e^3) = 3 + log(1 + e^-1 + e^-2), and the same for the row shifted by 1.
  Variable x = variable({2, 3}, {1, 2, 3, 2, 3, 4});
  const double row = 3 + std::log(1 + std::exp(-1.0) + std::exp(-2.0));
  expect_values(logsumexp(x, 1).value(), Shape{2}, {row, row + 1});
  // Down the columns: log(e^1 + e^2) = 2 + log(1 + e^-1).
  const double column = 2 + std::log(1 + std::exp(-1.0));
  expect_values(logsumexp(x, 0, /*keepdim=*/true).value(), Shape{1, 3},
                {column, column + 1, column + 2});
}

TEST(Logsumexp, NegativeDimCountsFromTheEnd) {
  Variable x = counting_2x3x4();
  expect_values(logsumexp(x, -2).value(), Shape{2, 4}, logsumexp(x, 1).value().to_vector());
}

TEST(Logsumexp, LargeValuesDoNotOverflow) {
  // exp(1000) overflows in double; shifting by the maximum does not.
  Variable x = variable({2}, {1000, 1000});
  expect_values(logsumexp(x, 0).value(), Shape{}, {1000 + std::log(2.0)});
  Variable f(Tensor::from({3}, std::vector<float>{100.0f, 90.0f, -100.0f}));
  Variable y = logsumexp(f, 0);
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_NEAR(y.value().item(), 100 + std::log1p(std::exp(-10.0)), 1e-5);
}

TEST(Logsumexp, InfinitiesAndEmptyReductionsGiveInfinities) {
  const double inf = std::numeric_limits<double>::infinity();
  expect_values(logsumexp(variable({2}, {-inf, -inf}), 0).value(), Shape{}, {-inf});
  expect_values(logsumexp(variable({2}, {inf, 1}), 0).value(), Shape{}, {inf});
  Variable empty(Tensor::zeros({2, 0}, DType::Float64), true);
  expect_values(logsumexp(empty, 1).value(), Shape{2}, {-inf, -inf});
}

TEST(Logsumexp, ZeroDimTensorIsItself) {
  expect_values(logsumexp(variable({}, {0.75}), -1).value(), Shape{}, {0.75});
}

TEST(Logsumexp, GradientIsTheSoftmax) {
  Variable x = variable({3}, {1, 2, 3});
  logsumexp(x, 0).backward();
  const double total = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  expect_values(x.grad(), Shape{3},
                {std::exp(1.0) / total, std::exp(2.0) / total, std::exp(3.0) / total});
}

TEST(Logsumexp, DimOutOfRangeThrowsNamingOpAndShape) {
  EXPECT_EQ(thrown_message([] { logsumexp(variable({2, 3}, std::vector<double>(6)), -3); }),
            "logsumexp: dim -3 out of range in dims [-3] for x of shape [2, 3]");
}

TEST(Logsumexp, GradMatchesNumericForSeveralShapes) {
  Generator gen(12);
  struct Case {
    Shape shape;
    std::int64_t dim;
  };
  const std::vector<Case> cases = {{{1}, 0},       {{7}, -1},         {{1, 5}, 1},
                                   {{4, 3}, 0},    {{4, 3}, -1},      {{3, 1, 5}, 1},
                                   {{2, 3, 5}, 1}, {{2, 3, 5}, -3},   {{2, 3, 2, 3}, 2},
                                   {{}, 0}};
  for (const Case& c : cases)
    for (bool keepdim : {false, true}) {
      const Shape& shape = c.shape;
      const std::int64_t dim = c.dim;
      // Spread over [-3, 3] so that the softmax weights differ widely.
      std::vector<Variable> inputs{random_variable(shape, gen, true, -3, 3)};
      auto result =
          gradcheck([&](const auto& v) { return logsumexp(v[0], dim, keepdim); }, inputs);
      EXPECT_TRUE(result.ok) << shape_str(shape) << " dim " << dim
                             << (keepdim ? " keepdim" : "") << ": " << result.message;
    }
}

TEST(Logsumexp, InputModifiedInPlaceBeforeBackwardThrows) {
  Variable x(Tensor::from({3}, {1.0, 2.0, 3.0}, DType::Float64), true, "x");
  Variable y = logsumexp(x, 0);
  x.mutable_value().fill(0.0);
  expect_starts_with(thrown_message([&] { y.backward(); }),
                     "logsumexp: input 0 ('x'), saved for backward at version 0, was modified in "
                     "place");
}
