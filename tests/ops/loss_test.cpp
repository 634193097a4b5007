// nll_loss: hand values, target validation, gradient at the targets, owned targets, gradcheck.
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
