// nll_loss and cross_entropy: hand values, target validation, gradients, owned targets, stability
// for large logits, gradchecks.
#include "ops/loss.hpp"

#include <cmath>

#include <gtest/gtest.h>

#include "autograd/gradcheck.hpp"
#include "ops/softmax.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

Variable logp_2x3() {
  return Variable(Tensor::from({2, 3}, {-1.0, -2.0, -3.0, -0.5, -1.5, -2.5}, DType::Float64), true);
}

}  // namespace

TEST(NllLoss, IsMinusMeanOfTargetLogProbabilities) {
  const std::vector<std::int64_t> targets{2, 0};
  Variable y = nll_loss(logp_2x3(), targets);
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_DOUBLE_EQ(y.value().item(), 1.75);  // -(-3 + -0.5) / 2
}

TEST(NllLoss, AfterLogSoftmaxIsCrossEntropy) {
  // One row [1, 2, 3], target 0: -log(e^1 / (e^1 + e^2 + e^3)) = 2 + log(1 + e^-1 + e^-2).
  Variable x(Tensor::from({1, 3}, {1.0, 2.0, 3.0}, DType::Float64));
  const std::vector<std::int64_t> targets{0};
  EXPECT_NEAR(nll_loss(log_softmax(x, 1), targets).value().item(),
              2 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-14);
}

TEST(NllLoss, GradientIsMinusOneOverNAtTheTargets) {
  Variable logp = logp_2x3();
  const std::vector<std::int64_t> targets{2, 0};
  nll_loss(logp, targets).backward();
  EXPECT_EQ(logp.grad().to_vector(), (std::vector<double>{0, 0, -0.5, -0.5, 0, 0}));
}

TEST(NllLoss, KeepsItsOwnCopyOfTheTargets) {
  Variable logp = logp_2x3();
  Variable y;
  {
    std::vector<std::int64_t> targets{1, 2};
    y = nll_loss(logp, targets);
    targets.assign({0, 0});  // the caller's buffer changes, then dies
  }
  y.backward();
  EXPECT_EQ(logp.grad().to_vector(), (std::vector<double>{0, -0.5, 0, 0, 0, -0.5}));
}

TEST(NllLoss, TargetOutOfRangeThrowsNamingIndexAndValue) {
  Variable logp = logp_2x3();
  const std::vector<std::int64_t> too_big{0, 3}, negative{-1, 0};
  EXPECT_EQ(thrown_message([&] { nll_loss(logp, too_big); }),
            "nll_loss: target 1 is 3, outside [0, 3) for logp of shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { nll_loss(logp, negative); }),
            "nll_loss: target 0 is -1, outside [0, 3) for logp of shape [2, 3]");
}

TEST(NllLoss, TargetCountMismatchThrows) {
  Variable logp = logp_2x3();
  const std::vector<std::int64_t> three{0, 1, 2};
  EXPECT_EQ(thrown_message([&] { nll_loss(logp, three); }),
            "nll_loss: 3 targets for logp of shape [2, 3] (need one per row)");
}

TEST(NllLoss, NonMatrixInputThrows) {
  Variable logp(Tensor::zeros({2, 3, 1}, DType::Float64));
  const std::vector<std::int64_t> targets{0, 1};
  EXPECT_EQ(thrown_message([&] { nll_loss(logp, targets); }),
            "nll_loss: logp must be [N, C], got [2, 3, 1]");
}

TEST(NllLoss, WorksInFloat32) {
  Variable logp(Tensor::from({2, 2}, std::vector<float>{-0.25f, -1.5f, -2.0f, -0.125f}));
  const std::vector<std::int64_t> targets{0, 1};
  Variable y = nll_loss(logp, targets);
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_FLOAT_EQ(static_cast<float>(y.value().item()), 0.1875f);
}

TEST(NllLoss, GradMatchesNumeric) {
  Generator gen(40);
  const std::vector<std::pair<Shape, std::vector<std::int64_t>>> cases = {
      {{1, 1}, {0}}, {{1, 10}, {7}}, {{5, 3}, {0, 2, 1, 1, 2}}};
  for (const auto& [shape, case_targets] : cases) {
    const std::vector<std::int64_t>& targets = case_targets;  // clang 14 cannot capture a binding
    std::vector<Variable> inputs{
        Variable(Tensor::uniform(shape, -3, 0, gen, DType::Float64), true)};
    auto result = gradcheck([&](const auto& v) { return nll_loss(v[0], targets); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << ": " << result.message;
    auto composed = gradcheck(
        [&](const auto& v) { return nll_loss(log_softmax(v[0], 1), targets); }, inputs);
    EXPECT_TRUE(composed.ok) << "with log_softmax " << shape_str(shape) << ": " << composed.message;
  }
}

TEST(NllLoss, SavesNothingOfLogpSoItMayBeModified) {
  Variable logp = logp_2x3();
  const std::vector<std::int64_t> targets{2, 0};
  Variable loss = nll_loss(logp, targets);
  logp.mutable_value().fill(0.0);
  loss.backward();
  EXPECT_EQ(logp.grad().to_vector(), (std::vector<double>{0, 0, -0.5, -0.5, 0, 0}));
}

// ---- cross_entropy ----

namespace {

Variable logits_2x3() {
  return Variable(Tensor::from({2, 3}, {1.0, 2.0, 3.0, 0.5, -1.0, 2.0}, DType::Float64), true);
}

}  // namespace

TEST(CrossEntropy, MatchesHandValues) {
  // Row [1, 2, 3], target 0: log(e^1 + e^2 + e^3) - 1 = 2 + log(1 + e^-1 + e^-2).
  Variable x(Tensor::from({1, 3}, {1.0, 2.0, 3.0}, DType::Float64));
  const std::vector<std::int64_t> target0{0};
  Variable y = cross_entropy(x, target0);
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_NEAR(y.value().item(), 2 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-14);
  EXPECT_NEAR(y.value().item(), 2.40760596444438, 1e-13);
  // Two rows: the mean of the rows' losses. Row [0.5, -1, 2], target 2:
  // log(e^0.5 + e^-1 + e^2) - 2 = log(1 + e^-1.5 + e^-3).
  const std::vector<std::int64_t> targets{0, 2};
  const double row0 = 2 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)),
               row1 = std::log(1 + std::exp(-1.5) + std::exp(-3.0));
  EXPECT_NEAR(cross_entropy(logits_2x3(), targets).value().item(), (row0 + row1) / 2, 1e-14);
}

TEST(CrossEntropy, EqualsNllLossOfLogSoftmax) {
  Generator gen(41);
  Variable x(Tensor::uniform({6, 5}, -4, 4, gen, DType::Float64));
  const std::vector<std::int64_t> targets{0, 4, 2, 2, 1, 3};
  EXPECT_NEAR(cross_entropy(x, targets).value().item(),
              nll_loss(log_softmax(x, 1), targets).value().item(), 1e-14);
}

TEST(CrossEntropy, IsOneNodeOverTheLogits) {
  Variable x = logits_2x3();
  const std::vector<std::int64_t> targets{0, 2};
  Variable y = cross_entropy(x, targets);
  ASSERT_NE(y.node(), nullptr);
  EXPECT_EQ(y.node()->op, "cross_entropy");
  ASSERT_EQ(y.node()->inputs.size(), 1u);
  EXPECT_EQ(y.node()->inputs[0].id(), x.id());
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  // exp(1000) overflows even in double; shifting by the row's maximum avoids it.
  Variable x(Tensor::from({2, 3}, {1000.0, 1001.0, 1002.0, -1000.0, -1001.0, -1002.0},
                          DType::Float64), true);
  const std::vector<std::int64_t> targets{0, 0};
  Variable y = cross_entropy(x, targets);
  // Row 0 as [1, 2, 3] with target 0; row 1's target is its maximum: log(1 + e^-1 + e^-2).
  const double expected = (2 + std::log(1 + std::exp(-1.0) + std::exp(-2.0)) +
                           std::log(1 + std::exp(-1.0) + std::exp(-2.0))) / 2;
  EXPECT_NEAR(y.value().item(), expected, 1e-12);
  y.backward();
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_TRUE(std::isfinite(x.grad().at(i))) << i;

  Variable x32(Tensor::from({1, 3}, std::vector<float>{1000.0f, 1001.0f, 1002.0f}));
  const std::vector<std::int64_t> target2{2};
  EXPECT_NEAR(cross_entropy(x32, target2).value().item(),
              std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-6);
}

TEST(CrossEntropy, GradientIsSoftmaxMinusOneHotOverN) {
  Variable x = logits_2x3();
  const std::vector<std::int64_t> targets{0, 2};
  cross_entropy(x, targets).backward(Tensor::full({}, 3.0, DType::Float64));
  const Tensor probabilities = softmax(x.detach(), 1).value();
  const std::vector<double> onehot{1, 0, 0, 0, 0, 1};
  for (std::int64_t i = 0; i < 6; ++i)
    EXPECT_NEAR(x.grad().at(i),
                (probabilities.at(i) - onehot[static_cast<std::size_t>(i)]) * 3.0 / 2, 1e-15)
        << i;
}

TEST(CrossEntropy, KeepsItsOwnCopyOfTheTargets) {
  Variable reference = logits_2x3(), x = logits_2x3();
  const std::vector<std::int64_t> kept{1, 2};
  cross_entropy(reference, kept).backward();
  Variable y;
  {
    std::vector<std::int64_t> targets{1, 2};
    y = cross_entropy(x, targets);
    targets.assign({0, 0});  // the caller's buffer changes, then dies
  }
  y.backward();
  expect_values(x.grad(), reference.grad().to_vector());
}

TEST(CrossEntropy, SavesNothingOfTheLogitsSoTheyMayBeModified) {
  Variable reference = logits_2x3(), x = logits_2x3();
  const std::vector<std::int64_t> targets{2, 1};
  cross_entropy(reference, targets).backward();
  Variable loss = cross_entropy(x, targets);
  x.mutable_value().fill(0.0);
  loss.backward();
  expect_values(x.grad(), reference.grad().to_vector());
}

TEST(CrossEntropy, TargetOutOfRangeThrowsNamingIndexValueAndShape) {
  Variable x = logits_2x3();
  const std::vector<std::int64_t> too_big{0, 3}, negative{-1, 0};
  EXPECT_EQ(thrown_message([&] { cross_entropy(x, too_big); }),
            "cross_entropy: target 1 is 3, outside [0, 3) for logits of shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { cross_entropy(x, negative); }),
            "cross_entropy: target 0 is -1, outside [0, 3) for logits of shape [2, 3]");
}

TEST(CrossEntropy, WrongTargetCountOrShapeThrowsNamingTheShape) {
  Variable x = logits_2x3();
  const std::vector<std::int64_t> three{0, 1, 2}, two{0, 1}, none{};
  EXPECT_EQ(thrown_message([&] { cross_entropy(x, three); }),
            "cross_entropy: 3 targets for logits of shape [2, 3] (need one per row)");
  Variable x3(Tensor::zeros({2, 3, 1}, DType::Float64));
  EXPECT_EQ(thrown_message([&] { cross_entropy(x3, two); }),
            "cross_entropy: logits must be [N, C], got [2, 3, 1]");
  Variable empty(Tensor::zeros({0, 3}, DType::Float64));
  EXPECT_EQ(thrown_message([&] { cross_entropy(empty, none); }),
            "cross_entropy: empty batch: the mean over 0 rows is undefined");
}

TEST(CrossEntropy, WorksInFloat32) {
  Variable x(Tensor::from({2, 3}, std::vector<float>{1, 2, 3, 0.5f, -1, 2}), true);
  const std::vector<std::int64_t> targets{0, 2};
  Variable y = cross_entropy(x, targets);
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_NEAR(y.value().item(), cross_entropy(logits_2x3(), targets).value().item(), 1e-6);
  y.backward();
  EXPECT_EQ(x.grad().dtype(), DType::Float32);
  Variable reference = logits_2x3();
  cross_entropy(reference, targets).backward();
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_NEAR(x.grad().at(i), reference.grad().at(i), 1e-6);
}

TEST(CrossEntropy, GradMatchesNumeric) {
  Generator gen(42);
  const std::vector<std::pair<Shape, std::vector<std::int64_t>>> cases = {
      {{1, 1}, {0}}, {{1, 10}, {7}}, {{5, 3}, {0, 2, 1, 1, 2}}, {{4, 7}, {6, 0, 3, 3}}};
  for (const auto& [shape, case_targets] : cases) {
    const std::vector<std::int64_t>& targets = case_targets;  // clang 14 cannot capture a binding
    std::vector<Variable> inputs{
        Variable(Tensor::uniform(shape, -3, 3, gen, DType::Float64), true)};
    auto result = gradcheck([&](const auto& v) { return cross_entropy(v[0], targets); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << ": " << result.message;
    EXPECT_GT(result.checked, 0);
  }
}
