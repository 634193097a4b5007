// Optimisers against torch.optim's update rules, computed by hand, and the learning-rate schedules.
#include "models/nn/optim.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <numbers>

using namespace ag;

namespace {
Variable parameter(std::vector<double> values) {
  return Variable(Tensor::from({static_cast<std::int64_t>(values.size())}, values, DType::Float64), true);
}
void set_grad(Variable& p, std::vector<double> g) {
  p.mutable_grad() = Tensor::from({static_cast<std::int64_t>(g.size())}, g, DType::Float64);
}
}  // namespace

TEST(SGD, PlainStepIsGradientDescent) {
  Variable p = parameter({1.0, -2.0});
  nn::SGD sgd({p}, {.lr = 0.1});
  set_grad(p, {0.5, -1.0});
  sgd.step();
  EXPECT_DOUBLE_EQ(p.value().at(0), 1.0 - 0.1 * 0.5);
  EXPECT_DOUBLE_EQ(p.value().at(1), -2.0 + 0.1 * 1.0);
}

TEST(SGD, MomentumWeightDecayAndNesterovFollowTorch) {
  // torch.optim.SGD: g = grad + wd p; buf = g (first step), then buf = m buf + g;
  // update = nesterov ? g + m buf : buf;  p -= lr update.
  for (bool nesterov : {false, true}) {
    const double lr = 0.1, m = 0.9, wd = 0.01;
    Variable p = parameter({1.0});
    nn::SGD sgd({p}, {.lr = lr, .momentum = m, .weight_decay = wd, .nesterov = nesterov});
    double w = 1.0, buf = 0;
    const double grads[] = {0.5, -0.25, 0.125};
    for (int t = 0; t < 3; ++t) {
      set_grad(p, {grads[t]});
      sgd.step();
      const double g = grads[t] + wd * w;
      buf = t == 0 ? g : m * buf + g;
      w -= lr * (nesterov ? g + m * buf : buf);
      EXPECT_NEAR(p.value().at(0), w, 1e-15) << "nesterov " << nesterov << " step " << t;
    }
  }
}

TEST(SGD, SkipsParametersWithoutGradient) {
  Variable p = parameter({1.0});
  nn::SGD sgd({p}, {.lr = 0.1, .momentum = 0.9});
  sgd.step();
  EXPECT_EQ(p.value().at(0), 1.0);
}

TEST(SGD, StateRoundTripsForCheckpoints) {
  Variable p = parameter({1.0, 2.0}), q = parameter({1.0, 2.0});
  nn::SGD a({p}, {.lr = 0.1, .momentum = 0.9}), b({q}, {.lr = 0.1, .momentum = 0.9});
  set_grad(p, {1.0, 1.0});
  a.step();
  b.load_state(a.state(), a.steps_taken());
  q.mutable_value() = p.value().clone();
  set_grad(p, {0.5, -0.5});
  set_grad(q, {0.5, -0.5});
  a.step();
  b.step();
  EXPECT_EQ(p.value().to_vector(), q.value().to_vector());
}

TEST(Adam, FollowsTorchWithBiasCorrection) {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Variable p = parameter({0.5});
  nn::Adam adam({p}, {.lr = lr});
  double w = 0.5, m = 0, v = 0;
  const double grads[] = {0.3, -0.1, 0.2, 0.05};
  for (int t = 1; t <= 4; ++t) {
    set_grad(p, {grads[t - 1]});
    adam.step();
    const double g = grads[t - 1];
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    w -= lr * (m / (1 - std::pow(b1, t))) / (std::sqrt(v / (1 - std::pow(b2, t))) + eps);
    EXPECT_NEAR(p.value().at(0), w, 1e-14) << "step " << t;
  }
}

// Threads split an update by element ranges (begin_step, then update over each range); any split
// of the elements laid end to end, in any order, must give step()'s parameters bit for bit.
TEST(Optimizer, UpdateByRangesGivesStepBitForBit) {
  const auto make = [] {
    return std::vector<Variable>{parameter({0.5, -1.5, 2.0}), parameter({1.0, 3.0}),
                                 parameter({-0.25, 0.75, 1.25, -2.0})};
  };
  const std::vector<std::vector<double>> grads{{0.1, -0.2, 0.3}, {0.7, -0.05}, {0.2, 0.4, -0.6, 0.01}};
  for (bool adam : {false, true}) {
    std::vector<Variable> whole = make(), split = make();
    const auto optimizer = [&](const std::vector<Variable>& params) -> std::unique_ptr<nn::Optimizer> {
      if (adam) return std::make_unique<nn::Adam>(params, nn::AdamOptions{.lr = 0.01, .weight_decay = 0.1});
      return std::make_unique<nn::SGD>(
          params, nn::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
    };
    const auto a = optimizer(whole), b = optimizer(split);
    ASSERT_EQ(b->numel(), 9);
    for (int step = 0; step < 3; ++step) {
      for (std::size_t i = 0; i < grads.size(); ++i) {
        std::vector<double> g = grads[i];
        for (double& v : g) v *= step + 1;
        set_grad(whole[i], g);
        set_grad(split[i], g);
      }
      a->step();
      b->begin_step();
      b->update(5, 9);  // straddles the second and third parameters
      b->update(0, 2);
      b->update(2, 5);
      for (std::size_t i = 0; i < whole.size(); ++i)
        EXPECT_EQ(whole[i].value().to_vector(), split[i].value().to_vector())
            << (adam ? "adam" : "sgd") << " step " << step << " parameter " << i;
    }
    EXPECT_EQ(b->steps_taken(), 3);
    EXPECT_NE(whole[2].value().to_vector(), make()[2].value().to_vector()) << "it did move";
  }
}

TEST(Optimizer, UpdateOutsideARangeLeavesParametersAlone) {
  Variable p = parameter({1.0, 2.0}), q = parameter({3.0});
  nn::SGD sgd({p, q}, {.lr = 0.5});
  set_grad(p, {1.0, 1.0});
  set_grad(q, {1.0});
  sgd.begin_step();
  sgd.update(1, 2);
  EXPECT_EQ(p.value().to_vector(), (std::vector<double>{1.0, 1.5}));
  EXPECT_EQ(q.value().to_vector(), (std::vector<double>{3.0}));
}

TEST(LrSchedule, CosineGoesFromBaseToMinOverTheRun) {
  nn::LrSchedule s{.kind = nn::LrSchedule::Kind::Cosine, .base_lr = 0.1, .total_steps = 100, .min_lr = 0.001};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.1);
  EXPECT_NEAR(s.lr_at(50), 0.001 + 0.099 * 0.5, 1e-12);
  EXPECT_NEAR(s.lr_at(100), 0.001, 1e-12);
  EXPECT_NEAR(s.lr_at(500), 0.001, 1e-12) << "stays at the minimum past the end";
  for (int t = 1; t <= 100; ++t) EXPECT_LE(s.lr_at(t), s.lr_at(t - 1));
}

TEST(LrSchedule, StepDecaysEveryStepSize) {
  nn::LrSchedule s{.kind = nn::LrSchedule::Kind::Step, .base_lr = 1.0, .step_size = 10, .gamma = 0.5};
  EXPECT_DOUBLE_EQ(s.lr_at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(25), 0.25);
}

TEST(LrSchedule, WarmupRampsLinearly) {
  nn::LrSchedule s{.kind = nn::LrSchedule::Kind::Constant, .base_lr = 0.2, .warmup_steps = 4};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.05);
  EXPECT_DOUBLE_EQ(s.lr_at(3), 0.2);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.2);
}

TEST(LrSchedule, PiecewiseHoldsEachFactorFromItsBoundary) {
  nn::LrSchedule s{.kind = nn::LrSchedule::Kind::Piecewise, .base_lr = 0.5, .boundaries = {0, 3, 7},
                   .factors = {1.0, 0.4, 0.02}};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(2), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(3), 0.2);
  EXPECT_DOUBLE_EQ(s.lr_at(6), 0.2);
  EXPECT_DOUBLE_EQ(s.lr_at(7), 0.01);
  EXPECT_DOUBLE_EQ(s.lr_at(1000), 0.01);
}

// p -= lr / (mu + h) * grad, each element with its own curvature; a new rate or curvature takes
// effect at the next step.
TEST(SDLM, StepsEachParameterByTheRateOverMuPlusItsCurvature) {
  Variable p(Tensor::from({3}, {1.0, 2.0, 3.0}, DType::Float64), true);
  nn::SDLM sdlm({p}, {.lr = 0.1, .mu = 0.5});
  sdlm.set_curvature({Tensor::from({3}, {0.0, 0.5, 1.5}, DType::Float64)});
  p.mutable_grad() = Tensor::from({3}, {1.0, 1.0, -2.0}, DType::Float64);
  sdlm.step();
  EXPECT_NEAR(p.value().at(0), 1.0 - 0.1 / 0.5 * 1.0, 1e-15);
  EXPECT_NEAR(p.value().at(1), 2.0 - 0.1 / 1.0 * 1.0, 1e-15);
  EXPECT_NEAR(p.value().at(2), 3.0 + 0.1 / 2.0 * 2.0, 1e-15);
  sdlm.set_lr(0.2);
  sdlm.set_curvature({Tensor::from({3}, {1.5, 1.5, 1.5}, DType::Float64)});
  const double before = p.value().at(0);
  sdlm.step();
  EXPECT_NEAR(p.value().at(0), before - 0.2 / 2.0 * 1.0, 1e-15);
}

TEST(SDLM, RefusesACurvatureOfAnotherShapeOrNegative) {
  Variable p(Tensor::zeros({2, 2}, DType::Float64), true, "fc.weight");
  nn::SDLM sdlm({p}, {});
  EXPECT_THROW(sdlm.set_curvature({Tensor::zeros({4}, DType::Float64)}), std::invalid_argument);
  EXPECT_THROW(sdlm.set_curvature({Tensor::full({2, 2}, -1.0, DType::Float64)}), std::invalid_argument);
  EXPECT_THROW(sdlm.set_curvature({}), std::invalid_argument);
}

TEST(SDLM, StateCarriesTheCurvatureToAResumedRun) {
  Variable p(Tensor::from({2}, {1.0, 1.0}, DType::Float64), true);
  nn::SDLM first({p}, {.lr = 0.1});
  first.set_curvature({Tensor::from({2}, {0.3, 4.0}, DType::Float64)});
  Variable q(Tensor::from({2}, {1.0, 1.0}, DType::Float64), true);
  nn::SDLM resumed({q}, {.lr = 0.1});
  resumed.load_state(first.state(), 7);
  EXPECT_EQ(resumed.curvature()[0].to_vector(), (std::vector<double>{0.3, 4.0}));
  EXPECT_EQ(resumed.steps_taken(), 7);
}
