// softmax and log_softmax: hand values, stability for large inputs, any dimension of a 3-d tensor,
// 0-d tensors, gradchecks, and their saved output modified in place.
#include "ops/softmax.hpp"

#include <cmath>

#include <gtest/gtest.h>

#include "autograd/gradcheck.hpp"
#include "ops/arithmetic.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

// log(e^1 + e^2 + e^3) = 3 + log(1 + e^-1 + e^-2), by hand.
const double kLogSumExp123 = 3 + std::log(1 + std::exp(-1.0) + std::exp(-2.0));

}  // namespace

TEST(LogSoftmax, MatchesHandValuesOnARow) {
  Variable x(Tensor::from({1, 3}, {1.0, 2.0, 3.0}, DType::Float64));
  Variable y = log_softmax(x, 1);
  EXPECT_EQ(y.shape(), (Shape{1, 3}));
  EXPECT_NEAR(y.value().at(0), 1 - kLogSumExp123, 1e-14);
  EXPECT_NEAR(y.value().at(1), 2 - kLogSumExp123, 1e-14);
  EXPECT_NEAR(y.value().at(2), 3 - kLogSumExp123, 1e-14);
  EXPECT_NEAR(y.value().at(2), -0.40760596444438, 1e-13);
}

TEST(LogSoftmax, LargeValuesStayFinite) {
  // exp(1000) overflows in double; shifting by the max avoids it.
  Variable x(Tensor::from({2, 3}, {1000.0, 1001.0, 1002.0, -1000.0, -1001.0, -1002.0},
                          DType::Float64));
  Variable y = log_softmax(x, -1);
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_TRUE(std::isfinite(y.value().at(i))) << i;
  EXPECT_NEAR(y.value().at(0), 1 - kLogSumExp123, 1e-12);
  EXPECT_NEAR(y.value().at(2), 3 - kLogSumExp123, 1e-12);
  EXPECT_NEAR(y.value().at(3), 3 - kLogSumExp123, 1e-12);  // -1000 is the largest of its row
}

TEST(LogSoftmax, LargeValuesStayFiniteInFloat32) {
  Variable x(Tensor::from({3}, std::vector<float>{1000.0f, 1001.0f, 1002.0f}));
  Variable y = log_softmax(x, 0);
  EXPECT_EQ(y.dtype(), DType::Float32);
  for (std::int64_t i = 0; i < 3; ++i)
    EXPECT_NEAR(y.value().at(i), (i + 1) - kLogSumExp123, 1e-6) << i;
}

TEST(LogSoftmax, ExpSumsToOneAlongEachDimOf3dTensor) {
  Generator gen(30);
  Variable x(Tensor::uniform({2, 3, 4}, -3, 3, gen, DType::Float64));
  // dim d: strides 12, 4, 1; sizes 2, 3, 4.
  const std::int64_t strides[] = {12, 4, 1};
  for (std::int64_t dim : {0, 1, 2, -1}) {
    const std::int64_t d = dim < 0 ? dim + 3 : dim;
    Tensor y = log_softmax(x, dim).value();
    for (std::int64_t start = 0; start < 24; ++start) {
      if ((start / strides[d]) % x.shape()[static_cast<std::size_t>(d)] != 0) continue;
      double total = 0;
      for (std::int64_t k = 0; k < x.shape()[static_cast<std::size_t>(d)]; ++k)
        total += std::exp(y.at(start + k * strides[d]));
      EXPECT_NEAR(total, 1.0, 1e-12) << "dim " << dim << ", fiber at " << start;
    }
  }
}

TEST(LogSoftmax, DimOutOfRangeThrowsNamingShape) {
  Variable x(Tensor::zeros({2, 3}, DType::Float64));
  try {
    log_softmax(x, 2);
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "log_softmax: dim 2 out of range for shape [2, 3]");
  }
  EXPECT_THROW(log_softmax(x, -3), std::invalid_argument);
}

TEST(LogSoftmax, GradMatchesNumericOnEveryDimOf3dTensor) {
  Generator gen(31);
  for (const Shape& shape : std::vector<Shape>{{2, 3, 4}, {3, 1, 5}, {1, 4, 3}}) {
    std::vector<Variable> inputs{
        Variable(Tensor::uniform(shape, -2, 2, gen, DType::Float64), true)};
    for (std::int64_t dim : {0, 1, 2, -1}) {
      auto result = gradcheck([dim](const auto& v) { return log_softmax(v[0], dim); }, inputs);
      EXPECT_TRUE(result.ok) << shape_str(shape) << " dim " << dim << ": " << result.message;
    }
  }
}

TEST(LogSoftmax, GradMatchesNumericOnBatchesOfRows) {
  Generator gen(32);
  for (const Shape& shape : std::vector<Shape>{{1, 1}, {1, 10}, {5, 7}, {7}}) {
    std::vector<Variable> inputs{
        Variable(Tensor::uniform(shape, -5, 5, gen, DType::Float64), true)};
    auto result = gradcheck([](const auto& v) { return log_softmax(v[0], -1); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << ": " << result.message;
  }
}

// ---- 0-d tensors: one softmax over the single element, as in PyTorch ----

TEST(LogSoftmax, ZeroDimTensorGivesZeroForDimZeroAndMinusOne) {
  for (DType dtype : {DType::Float64, DType::Float32})
    for (std::int64_t dim : {0, -1}) {
      Variable x(Tensor::full({}, 3.7, dtype), true);
      Variable y = log_softmax(x, dim);
      EXPECT_EQ(y.shape(), Shape{});
      EXPECT_EQ(y.dtype(), dtype);
      EXPECT_EQ(y.value().item(), 0.0) << "dim " << dim;
      mul(y, Variable(Tensor::full({}, 5.0, dtype))).backward();
      EXPECT_EQ(x.grad().shape(), Shape{});
      EXPECT_EQ(x.grad().item(), 0.0) << "dim " << dim;
    }
}

TEST(LogSoftmax, ZeroDimTensorRejectsOtherDims) {
  Variable x(Tensor::full({}, 1.0, DType::Float64));
  EXPECT_EQ(thrown_message([&] { log_softmax(x, 1); }),
            "log_softmax: dim 1 out of range for shape []");
  EXPECT_EQ(thrown_message([&] { log_softmax(x, -2); }),
            "log_softmax: dim -2 out of range for shape []");
}

TEST(LogSoftmax, ZeroDimGradMatchesNumeric) {
  std::vector<Variable> inputs{Variable(Tensor::full({}, -0.8, DType::Float64), true)};
  for (std::int64_t dim : {0, -1}) {
    auto result = gradcheck([dim](const auto& v) { return log_softmax(v[0], dim); }, inputs);
    EXPECT_TRUE(result.ok) << "dim " << dim << ": " << result.message;
    EXPECT_EQ(result.checked, 1);
  }
}

// ---- Its saved output modified in place ----

TEST(LogSoftmax, OutputModifiedInPlaceBeforeBackwardThrows) {
  Variable x(Tensor::from({2, 3}, {0.1, 0.2, 0.3, -1.0, 0.0, 1.0}, DType::Float64), true);
  Variable logp = log_softmax(x, 1);
  Variable loss = sum(logp);
  logp.mutable_value().fill(0.0);
  EXPECT_EQ(thrown_message([&] { loss.backward(); }),
            "log_softmax: its output, saved for backward at version 0, was modified in place "
            "since (now version 2); run backward before modifying it, or modify a clone of it");
}

TEST(LogSoftmax, SavesItsOutputNotItsInputSoTheInputMayBeModified) {
  const std::vector<double> values{0.1, 0.2, 0.3, -1.0, 0.0, 1.0};
  Variable reference(Tensor::from({2, 3}, values, DType::Float64), true);
  mul(log_softmax(reference, 1), reference.detach()).backward(Tensor::ones({2, 3}, DType::Float64));
  Variable x(Tensor::from({2, 3}, values, DType::Float64), true);
  Variable y = log_softmax(x, 1);
  Variable loss = mul(y, Variable(x.value().clone()));
  x.mutable_value().fill(7.0);
  loss.backward(Tensor::ones({2, 3}, DType::Float64));
  expect_values(x.grad(), reference.grad().to_vector());
}

// ---- softmax ----

TEST(Softmax, MatchesHandValuesOnARow) {
  Variable x(Tensor::from({1, 3}, {1.0, 2.0, 3.0}, DType::Float64));
  Variable y = softmax(x, 1);
  EXPECT_EQ(y.shape(), (Shape{1, 3}));
  // e^i / (e^1 + e^2 + e^3) = e^(i - 3) / (1 + e^-1 + e^-2)
  const double denominator = 1 + std::exp(-1.0) + std::exp(-2.0);
  EXPECT_NEAR(y.value().at(0), std::exp(-2.0) / denominator, 1e-15);
  EXPECT_NEAR(y.value().at(1), std::exp(-1.0) / denominator, 1e-15);
  EXPECT_NEAR(y.value().at(2), 1 / denominator, 1e-15);
  EXPECT_NEAR(y.value().at(2), 0.66524095577482, 1e-13);
}

TEST(Softmax, LargeValuesStayFinite) {
  Variable x(Tensor::from({2, 3}, {1000.0, 1001.0, 1002.0, -1000.0, -1001.0, -1002.0},
                          DType::Float64));
  Variable y = softmax(x, 1);
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_TRUE(std::isfinite(y.value().at(i))) << i;
  EXPECT_NEAR(y.value().at(2), std::exp(3 - kLogSumExp123), 1e-14);
  EXPECT_NEAR(y.value().at(3), std::exp(3 - kLogSumExp123), 1e-14);  // -1000 is the largest
}

TEST(Softmax, LargeValuesStayFiniteInFloat32) {
  Variable x(Tensor::from({3}, std::vector<float>{1000.0f, 1001.0f, 1002.0f}));
  Variable y = softmax(x, 0);
  EXPECT_EQ(y.dtype(), DType::Float32);
  for (std::int64_t i = 0; i < 3; ++i)
    EXPECT_NEAR(y.value().at(i), std::exp((i + 1) - kLogSumExp123), 1e-6) << i;
}

TEST(Softmax, IsExpOfLogSoftmaxAlongEachDimOf3dTensor) {
  Generator gen(33);
  Variable x(Tensor::uniform({2, 3, 4}, -3, 3, gen, DType::Float64));
  for (std::int64_t dim : {0, 1, 2, -1, -3}) {
    const Tensor y = softmax(x, dim).value();
    const Tensor logp = log_softmax(x, dim).value();
    for (std::int64_t i = 0; i < y.numel(); ++i)
      EXPECT_NEAR(y.at(i), std::exp(logp.at(i)), 1e-15) << "dim " << dim << ", element " << i;
  }
}

TEST(Softmax, BackwardMatchesHandComputed) {
  // dx = y * (dy - sum(dy * y)); with dy = [1, 0]: dx = [y0 (1 - y0), -y0 y1].
  Variable x(Tensor::from({2}, {0.5, -0.25}, DType::Float64), true);
  Variable y = softmax(x, 0);
  y.backward(Tensor::from({2}, {1.0, 0.0}, DType::Float64));
  const double y0 = y.value().at(0), y1 = y.value().at(1);
  EXPECT_NEAR(y0, 1 / (1 + std::exp(-0.75)), 1e-15);
  EXPECT_NEAR(x.grad().at(0), y0 * (1 - y0), 1e-15);
  EXPECT_NEAR(x.grad().at(1), -y0 * y1, 1e-15);
}

TEST(Softmax, DimOutOfRangeThrowsNamingOpAndShape) {
  Variable x(Tensor::zeros({2, 3}, DType::Float64));
  EXPECT_EQ(thrown_message([&] { softmax(x, 2); }),
            "softmax: dim 2 out of range for shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { softmax(x, -3); }),
            "softmax: dim -3 out of range for shape [2, 3]");
}

TEST(Softmax, GradMatchesNumericOnEveryDimOf3dTensor) {
  Generator gen(34);
  for (const Shape& shape : std::vector<Shape>{{2, 3, 4}, {3, 1, 5}, {1, 4, 3}}) {
    std::vector<Variable> inputs{
        Variable(Tensor::uniform(shape, -2, 2, gen, DType::Float64), true)};
    for (std::int64_t dim : {0, 1, 2, -1}) {
      auto result = gradcheck([dim](const auto& v) { return softmax(v[0], dim); }, inputs);
      EXPECT_TRUE(result.ok) << shape_str(shape) << " dim " << dim << ": " << result.message;
      EXPECT_GT(result.checked, 0);
    }
  }
}

TEST(Softmax, GradMatchesNumericOnBatchesOfRows) {
  Generator gen(35);
  for (const Shape& shape : std::vector<Shape>{{1, 1}, {1, 10}, {5, 7}, {7}}) {
    std::vector<Variable> inputs{
        Variable(Tensor::uniform(shape, -5, 5, gen, DType::Float64), true)};
    auto result = gradcheck([](const auto& v) { return softmax(v[0], -1); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << ": " << result.message;
  }
}

TEST(Softmax, ZeroDimTensorGivesOneWithZeroGradient) {
  for (DType dtype : {DType::Float64, DType::Float32})
    for (std::int64_t dim : {0, -1}) {
      Variable x(Tensor::full({}, 3.7, dtype), true);
      Variable y = softmax(x, dim);
      EXPECT_EQ(y.shape(), Shape{});
      EXPECT_EQ(y.dtype(), dtype);
      EXPECT_EQ(y.value().item(), 1.0) << "dim " << dim;
      mul(y, Variable(Tensor::full({}, 5.0, dtype))).backward();
      EXPECT_EQ(x.grad().item(), 0.0) << "dim " << dim;
    }
  Variable x(Tensor::full({}, 1.0, DType::Float64));
  EXPECT_EQ(thrown_message([&] { softmax(x, 1); }), "softmax: dim 1 out of range for shape []");
}

TEST(Softmax, OutputModifiedInPlaceBeforeBackwardThrows) {
  Variable x(Tensor::from({2, 3}, {0.1, 0.2, 0.3, -1.0, 0.0, 1.0}, DType::Float64), true);
  Variable y = softmax(x, 1);
  Variable loss = sum(y);
  y.mutable_value().fill(0.0);
  expect_starts_with(thrown_message([&] { loss.backward(); }),
                     "softmax: its output, saved for backward at version 0, was modified in "
                     "place");
}
