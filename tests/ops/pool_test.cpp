// max_pool2d: hand-computed forward and gradient routing, the first-maximum tie rule, float64
// gradchecks on tie-free inputs, the validation messages, and an input modified after the forward.
// avg_pool2d: hand-computed forward and gradient spreading (overlapping windows too), gradchecks,
// validation. subsampling2d: hand-computed forward and gradients, gradchecks, what it saves,
// validation.
#include "ops/pool.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <numeric>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "ops/arithmetic.hpp"
#include "ops/reduce.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

// A random permutation of 0, 1, ..., n-1, scaled by 0.1: every pair of values is 0.1 apart, so a
// finite-difference nudge of 1e-6 can never change which element is a window's maximum.
Variable tie_free_variable(const Shape& shape, Generator& gen) {
  std::vector<double> values(static_cast<std::size_t>(shape_numel(shape)));
  std::iota(values.begin(), values.end(), 0.0);
  for (std::size_t i = values.size(); i > 1; --i)
    std::swap(values[i - 1], values[gen.below(i)]);
  for (double& v : values) v = 0.1 * v - 1.0;
  return variable(shape, values);
}

// 4x4 image whose 2x2 windows have their maxima at four different corners.
const std::vector<double> image_4x4{
    1, 5, 2, 0,   //
    3, 4, 8, 6,   //
    9, 0, 1, 2,   //
    7, 3, 4, 11,  //
};

// d image_4x4 for max_pool2d(x, 2) and dy = [1, 2, 3, 4]: each gradient at its window's maximum.
const std::vector<double> pool_grad_of_image_4x4{
    0, 1, 0, 0,  //
    0, 0, 2, 0,  //
    3, 0, 0, 0,  //
    0, 0, 0, 4,  //
};

}  // namespace

TEST(MaxPool2d, ForwardMatchesHandComputed) {
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  expect_values(max_pool2d(x, 2, 2).value(), {1, 1, 2, 2}, {5, 8, 9, 11});
}

TEST(MaxPool2d, StrideZeroMeansStrideEqualsKernel) {
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  expect_values(max_pool2d(x, 2).value(), {1, 1, 2, 2}, {5, 8, 9, 11});
}

TEST(MaxPool2d, BackwardSendsEachGradientToItsWindowsMaximum) {
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  Variable y = max_pool2d(x, 2);
  y.backward(Tensor::from({1, 1, 2, 2}, {1.0, 2.0, 3.0, 4.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 4, 4}, pool_grad_of_image_4x4);
}

TEST(MaxPool2d, OverlappingWindowsAccumulateOnASharedMaximum) {
  // The centre is the maximum of all four 2x2 windows (stride 1): it collects all four gradients.
  Variable x = variable({1, 1, 3, 3}, {1, 2, 3, 4, 9, 5, 6, 7, 8});
  Variable y = max_pool2d(x, 2, 1);
  expect_values(y.value(), {1, 1, 2, 2}, {9, 9, 9, 9});
  y.backward(Tensor::from({1, 1, 2, 2}, {1.0, 10.0, 100.0, 1000.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 3, 3}, {0, 0, 0, 0, 1111, 0, 0, 0, 0});
}

TEST(MaxPool2d, OddSizeDropsLastRowAndColumn) {
  // 5x5 with kernel 2: windows cover rows/cols 0..3 only, so the 100 in the corner is never seen.
  std::vector<double> image(25);
  std::iota(image.begin(), image.end(), 0.0);
  image[24] = 100;
  Variable x = variable({1, 1, 5, 5}, image);
  expect_values(max_pool2d(x, 2).value(), {1, 1, 2, 2}, {6, 8, 16, 18});
}

TEST(MaxPool2d, PoolsEachPlaneOfABatchSeparately) {
  // Two images, two channels, 2x2 each: one window per plane.
  Variable x = variable({2, 2, 2, 2}, {1, 2, 3, 4, 8, 7, 6, 5, -1, -2, -3, -4, 0, 9, 0, 0});
  expect_values(max_pool2d(x, 2).value(), {2, 2, 1, 1}, {4, 8, -1, 9});
}

TEST(MaxPool2d, TiedWindowSendsWholeGradientToFirstElement) {
  Variable x = variable({1, 1, 2, 2}, {3, 3, 3, 3});
  Variable y = max_pool2d(x, 2);
  y.backward(Tensor::from({1, 1, 1, 1}, {5.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 2, 2}, {5, 0, 0, 0});
}

TEST(MaxPool2d, TieBetweenLaterElementsGoesToTheFirstInRowMajorOrder) {
  Variable x = variable({1, 1, 2, 2}, {0, 7, 7, 1});
  Variable y = max_pool2d(x, 2);
  y.backward(Tensor::ones({1, 1, 1, 1}, DType::Float64));
  expect_values(x.grad(), {1, 1, 2, 2}, {0, 1, 0, 0});
}

TEST(MaxPool2d, Float32MatchesFloat64) {
  Generator gen(3);
  Variable x = tie_free_variable({2, 3, 7, 6}, gen);
  const Tensor y64 = max_pool2d(x, 3, 2).value();
  const Tensor y32 = max_pool2d(Variable(x.value().to(DType::Float32)), 3, 2).value();
  ASSERT_EQ(y32.dtype(), DType::Float32);
  ASSERT_EQ(y32.shape(), y64.shape());
  for (std::int64_t i = 0; i < y64.numel(); ++i)
    EXPECT_FLOAT_EQ(static_cast<float>(y32.at(i)), static_cast<float>(y64.at(i)));
}

// ---- Gradcheck on tie-free inputs ------------------------------------------------------------

struct PoolCase {
  std::string name;
  Shape shape;
  std::int64_t kernel, stride;
};

std::ostream& operator<<(std::ostream& out, const PoolCase& c) { return out << c.name; }

class MaxPool2dGeometry : public ::testing::TestWithParam<PoolCase> {};

TEST_P(MaxPool2dGeometry, GradientMatchesNumeric) {
  const PoolCase& c = GetParam();
  Generator gen(static_cast<std::uint64_t>(shape_numel(c.shape)));
  auto r = gradcheck(
      [&c](const std::vector<Variable>& in) { return max_pool2d(in[0], c.kernel, c.stride); },
      {tie_free_variable(c.shape, gen)});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.checked, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MaxPool2dGeometry,
    ::testing::Values(PoolCase{"Kernel2Stride2", {2, 3, 4, 6}, 2, 2},
                      PoolCase{"Kernel3Stride2Overlapping", {1, 2, 7, 7}, 3, 2},
                      PoolCase{"Kernel2Stride1Overlapping", {2, 1, 5, 4}, 2, 1},
                      PoolCase{"Kernel2OddSizeDropsEdge", {1, 2, 5, 7}, 2, 2},
                      PoolCase{"Kernel3Stride3DropsEdge", {1, 1, 7, 8}, 3, 3}),
    [](const ::testing::TestParamInfo<PoolCase>& info) { return info.param.name; });

// ---- Validation ------------------------------------------------------------------------------

TEST(MaxPool2dErrors, KernelLargerThanInputNamesOpAndShape) {
  Variable x = variable({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  const std::string message = thrown_message([&] { max_pool2d(x, 3); });
  EXPECT_NE(message.find("max_pool2d"), std::string::npos) << message;
  EXPECT_NE(message.find("[1, 1, 2, 3]"), std::string::npos) << message;
}

TEST(MaxPool2dErrors, InputNotFourDimensionalNamesOpAndShape) {
  Variable x = variable({2, 2}, {1, 2, 3, 4});
  const std::string message = thrown_message([&] { max_pool2d(x, 2); });
  EXPECT_NE(message.find("max_pool2d"), std::string::npos) << message;
  EXPECT_NE(message.find("[2, 2]"), std::string::npos) << message;
}

TEST(MaxPool2dErrors, NonPositiveKernelOrNegativeStride) {
  Variable x = variable({1, 1, 2, 2}, {1, 2, 3, 4});
  EXPECT_NE(thrown_message([&] { max_pool2d(x, 0); }).find("max_pool2d"), std::string::npos);
  EXPECT_NE(thrown_message([&] { max_pool2d(x, 2, -1); }).find("max_pool2d"), std::string::npos);
}

TEST(MaxPool2d, SavesOnlyTheWinnersSoItsInputMayBeModified) {
  // The backward routes gradients by the argmax found in the forward; it never reads x again.
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  Variable y = max_pool2d(x, 2);
  x.mutable_value().fill(0.0);
  y.backward(Tensor::from({1, 1, 2, 2}, {1.0, 2.0, 3.0, 4.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 4, 4}, pool_grad_of_image_4x4);
}

// ---- avg_pool2d ----------------------------------------------------------------------------

TEST(AvgPool2d, ForwardMatchesHandComputed) {
  // Windows of image_4x4: {1, 5, 3, 4}, {2, 0, 8, 6}, {9, 0, 7, 3}, {1, 2, 4, 11}.
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  expect_values(avg_pool2d(x, 2, 2).value(), {1, 1, 2, 2}, {3.25, 4, 4.75, 4.5});
  expect_values(avg_pool2d(x, 2).value(), {1, 1, 2, 2}, {3.25, 4, 4.75, 4.5});  // stride 0
}

TEST(AvgPool2d, OverlappingWindowsAndOddSizeMatchHandComputed) {
  // 5x5 of 0..24: the mean of a window of this linear ramp is its centre.
  std::vector<double> image(25);
  std::iota(image.begin(), image.end(), 0.0);
  image[24] = 100;  // outside every 2x2 window (stride 2) below
  Variable x = variable({1, 1, 5, 5}, image);
  expect_values(avg_pool2d(x, 2).value(), {1, 1, 2, 2}, {3, 5, 13, 15});
  image[24] = 24;
  Variable ramp = variable({1, 1, 5, 5}, image);
  expect_values(avg_pool2d(ramp, 3, 2).value(), {1, 1, 2, 2}, {6, 8, 16, 18});
  expect_values(avg_pool2d(ramp, 3, 1).value(), {1, 1, 3, 3}, {6, 7, 8, 11, 12, 13, 16, 17, 18});
}

TEST(AvgPool2d, PoolsEachPlaneOfABatchSeparately) {
  Variable x = variable({2, 2, 2, 2}, {1, 2, 3, 4, 8, 7, 6, 5, -1, -2, -3, -4, 0, 9, 0, 0});
  expect_values(avg_pool2d(x, 2).value(), {2, 2, 1, 1}, {2.5, 6.5, -2.5, 2.25});
}

TEST(AvgPool2d, BackwardSpreadsEachGradientOverItsWindow) {
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  avg_pool2d(x, 2).backward(Tensor::from({1, 1, 2, 2}, {1.0, 2.0, 3.0, 4.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 4, 4},
                {0.25, 0.25, 0.5, 0.5,  //
                 0.25, 0.25, 0.5, 0.5,  //
                 0.75, 0.75, 1.0, 1.0,  //
                 0.75, 0.75, 1.0, 1.0});
}

TEST(AvgPool2d, OverlappingWindowsAccumulate) {
  // 3x3, kernel 2, stride 1: each element collects a quarter of dy from every window covering it.
  Variable x = variable({1, 1, 3, 3}, {1, 2, 3, 4, 9, 5, 6, 7, 8});
  Variable y = avg_pool2d(x, 2, 1);
  expect_values(y.value(), {1, 1, 2, 2}, {4, 4.75, 6.5, 7.25});
  y.backward(Tensor::from({1, 1, 2, 2}, {1.0, 10.0, 100.0, 1000.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 3, 3},
                {0.25, 2.75, 2.5,       //
                 25.25, 277.75, 252.5,  //
                 25, 275, 250});
}

TEST(AvgPool2d, OddSizeLeavesTheUncoveredEdgeWithoutGradient) {
  Variable x = variable({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  avg_pool2d(x, 2).backward(Tensor::ones({1, 1, 1, 1}, DType::Float64));
  expect_values(x.grad(), {1, 1, 3, 3}, {0.25, 0.25, 0, 0.25, 0.25, 0, 0, 0, 0});
}

TEST(AvgPool2d, Float32MatchesFloat64) {
  Generator gen(4);
  Variable x = random_variable({2, 3, 7, 6}, gen, /*requires_grad=*/false);
  const Tensor y64 = avg_pool2d(x, 3, 2).value();
  const Tensor y32 = avg_pool2d(Variable(x.value().to(DType::Float32)), 3, 2).value();
  ASSERT_EQ(y32.dtype(), DType::Float32);
  ASSERT_EQ(y32.shape(), y64.shape());
  for (std::int64_t i = 0; i < y64.numel(); ++i) EXPECT_NEAR(y32.at(i), y64.at(i), 1e-6) << i;
}

TEST(AvgPool2d, SavesNothingSoItsInputMayBeModified) {
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  Variable y = avg_pool2d(x, 2);
  x.mutable_value().fill(0.0);
  y.backward(Tensor::from({1, 1, 2, 2}, {4.0, 8.0, 12.0, 16.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 4, 4},
                {1, 1, 2, 2,  //
                 1, 1, 2, 2,  //
                 3, 3, 4, 4,  //
                 3, 3, 4, 4});
}

class AvgPool2dGeometry : public ::testing::TestWithParam<PoolCase> {};

TEST_P(AvgPool2dGeometry, GradientMatchesNumeric) {
  const PoolCase& c = GetParam();
  Generator gen(static_cast<std::uint64_t>(shape_numel(c.shape)) + 1);
  auto r = gradcheck(
      [&c](const std::vector<Variable>& in) { return avg_pool2d(in[0], c.kernel, c.stride); },
      {random_variable(c.shape, gen)});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.checked, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AvgPool2dGeometry,
    ::testing::Values(PoolCase{"Kernel2Stride2", {2, 3, 4, 6}, 2, 2},
                      PoolCase{"Kernel3Stride2Overlapping", {1, 2, 7, 7}, 3, 2},
                      PoolCase{"Kernel2Stride1Overlapping", {2, 1, 5, 4}, 2, 1},
                      PoolCase{"Kernel3Stride1Overlapping", {1, 1, 5, 6}, 3, 1},
                      PoolCase{"Kernel2OddSizeDropsEdge", {1, 2, 5, 7}, 2, 2},
                      PoolCase{"Kernel3Stride3DropsEdge", {3, 1, 7, 8}, 3, 3},
                      PoolCase{"KernelIsWholeImage", {2, 2, 3, 3}, 3, 0},
                      PoolCase{"Kernel1", {1, 1, 2, 3}, 1, 0}),
    [](const ::testing::TestParamInfo<PoolCase>& info) { return info.param.name; });

TEST(AvgPool2dErrors, KernelLargerThanInputNamesOpAndShape) {
  Variable x = variable({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(thrown_message([&] { avg_pool2d(x, 3); }),
            "avg_pool2d: kernel 3 is larger than x [1, 1, 2, 3]");
}

TEST(AvgPool2dErrors, InputNotFourDimensionalNamesOpAndShape) {
  Variable x = variable({2, 2}, {1, 2, 3, 4});
  EXPECT_EQ(thrown_message([&] { avg_pool2d(x, 2); }),
            "avg_pool2d: expected x of shape [N, C, H, W], got [2, 2]");
}

TEST(AvgPool2dErrors, NonPositiveKernelOrNegativeStride) {
  Variable x = variable({1, 1, 2, 2}, {1, 2, 3, 4});
  EXPECT_EQ(thrown_message([&] { avg_pool2d(x, 0); }), "avg_pool2d: kernel must be >= 1, got 0");
  EXPECT_EQ(thrown_message([&] { avg_pool2d(x, 2, -1); }),
            "avg_pool2d: stride must be >= 0 (0 = kernel), got -1");
}

// ---- subsampling2d ----

TEST(Subsampling2d, ForwardMatchesHandComputed) {
  // Window sums of image_4x4: 13, 16 / 19, 18; channel weight 0.5, bias 1.
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  Variable y = subsampling2d(x, variable({1}, {0.5}), variable({1}, {1.0}), 2);
  expect_values(y.value(), {1, 1, 2, 2}, {7.5, 9, 10.5, 10});
}

TEST(Subsampling2d, EachChannelHasItsOwnWeightAndBias) {
  // Two channels of a batch of two: x[n, c] = n + c + 1 everywhere, 2x2 windows of a 2x4 map.
  std::vector<double> values;
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 2; ++c)
      for (int k = 0; k < 8; ++k) values.push_back(n + c + 1);
  Variable y = subsampling2d(variable({2, 2, 2, 4}, values), variable({2}, {1.0, -2.0}),
                             variable({2}, {0.25, 3.0}), 2);
  expect_values(y.value(), {2, 2, 1, 2}, {4.25, 4.25, -13, -13, 8.25, 8.25, -21, -21});
}

TEST(Subsampling2d, GradientsMatchHandComputed) {
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  Variable w = variable({1}, {0.5}), b = variable({1}, {1.0});
  subsampling2d(x, w, b, 2).backward(Tensor::from({1, 1, 2, 2}, {1.0, 2.0, 3.0, 4.0}, DType::Float64));
  expect_values(x.grad(), {1, 1, 4, 4},
                {0.5, 0.5, 1, 1,  //
                 0.5, 0.5, 1, 1,  //
                 1.5, 1.5, 2, 2,  //
                 1.5, 1.5, 2, 2});
  expect_values(w.grad(), {1}, {13 + 2 * 16 + 3 * 19 + 4 * 18.0});
  expect_values(b.grad(), {1}, {10});
}

TEST(Subsampling2d, EqualsFourTimesAvgPoolTimesWeightPlusBias) {
  Generator gen(31);
  const Variable x = random_variable({2, 3, 6, 6}, gen), w = random_variable({3}, gen),
                 b = random_variable({3}, gen);
  const Tensor y = subsampling2d(x, w, b, 2).value();
  const Tensor expected =
      (4.0 * avg_pool2d(x, 2) * ag::testing::variable({3, 1, 1}, w.value().to_vector()) +
       ag::testing::variable({3, 1, 1}, b.value().to_vector()))
          .value();
  for (std::int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y.at(i), expected.at(i), 1e-15) << i;
}

struct SubsamplingCase {
  std::string name;
  Shape shape;
  std::int64_t kernel, stride;
  bool bias;
};

class Subsampling2dGeometry : public ::testing::TestWithParam<SubsamplingCase> {};

TEST_P(Subsampling2dGeometry, GradientMatchesNumeric) {
  const SubsamplingCase& c = GetParam();
  Generator gen(static_cast<std::uint64_t>(shape_numel(c.shape)) + 7);
  std::vector<Variable> inputs{random_variable(c.shape, gen), random_variable({c.shape[1]}, gen)};
  if (c.bias) inputs.push_back(random_variable({c.shape[1]}, gen));
  auto r = gradcheck(
      [&c](const std::vector<Variable>& in) {
        return subsampling2d(in[0], in[1], c.bias ? in[2] : Variable{}, c.kernel, c.stride);
      },
      inputs);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.checked, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Subsampling2dGeometry,
    ::testing::Values(SubsamplingCase{"Kernel2", {2, 3, 4, 6}, 2, 0, true},
                      SubsamplingCase{"Kernel2NoBias", {1, 2, 4, 4}, 2, 0, false},
                      SubsamplingCase{"Kernel3Stride2Overlapping", {1, 2, 7, 7}, 3, 2, true},
                      SubsamplingCase{"Kernel2Stride1Overlapping", {2, 1, 5, 4}, 2, 1, true},
                      SubsamplingCase{"OddSizeDropsEdge", {1, 2, 5, 7}, 2, 2, true},
                      SubsamplingCase{"Kernel1", {1, 3, 2, 3}, 1, 0, true}),
    [](const ::testing::TestParamInfo<SubsamplingCase>& info) { return info.param.name; });

TEST(Subsampling2d, SavesTheInputOnlyForTheWeightsGradient) {
  // The weight needs no gradient: x is not saved, and may change before the backward.
  Variable x = variable({1, 1, 4, 4}, image_4x4);
  Variable w = variable({1}, {0.5}, /*requires_grad=*/false);
  Variable y = subsampling2d(x, w, Variable{}, 2);
  x.mutable_value().fill(0.0);
  y.backward(Tensor::from({1, 1, 2, 2}, {1.0, 1.0, 1.0, 1.0}, DType::Float64));
  EXPECT_EQ(x.grad().to_vector(), std::vector<double>(16, 0.5));
  // It does: then a change is caught.
  Variable x2 = variable({1, 1, 4, 4}, image_4x4);
  Variable w2 = variable({1}, {0.5});
  Variable y2 = sum(subsampling2d(x2, w2, Variable{}, 2));
  x2.mutable_value().fill(0.0);
  expect_starts_with(thrown_message([&] { y2.backward(); }),
                     "subsampling2d: input 0, saved for backward at version 0, was modified");
}

TEST(Subsampling2dErrors, NameTheOpAndTheShapes) {
  Variable x = variable({1, 2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_EQ(thrown_message([&] { subsampling2d(x, variable({3}, {1, 1, 1}), Variable{}, 2); }),
            "subsampling2d: weight must be [2] for x [1, 2, 2, 2], got [3]");
  EXPECT_EQ(thrown_message([&] {
              subsampling2d(x, variable({2}, {1, 1}), variable({2, 1}, {0, 0}), 2);
            }),
            "subsampling2d: bias must be [2] for x [1, 2, 2, 2], got [2, 1]");
  EXPECT_EQ(thrown_message([&] {
              subsampling2d(x, Variable(Tensor::ones({2})), Variable{}, 2);
            }),
            "subsampling2d: weight is float32 but x is float64");
  EXPECT_EQ(thrown_message([&] { subsampling2d(x, Variable{}, Variable{}, 2); }),
            "subsampling2d: weight must be defined");
  EXPECT_EQ(thrown_message([&] { subsampling2d(x, variable({2}, {1, 1}), Variable{}, 3); }),
            "subsampling2d: kernel 3 is larger than x [1, 2, 2, 2]");
}
