// Graphs built from several real ops: shared inputs and weights, a 100,000-node chain, no-grad
// forwards, the whole LeNet-5 forward + loss gradchecked parameter by parameter, and an optimiser
// step run before the backward it should follow.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "autograd/engine.hpp"
#include "autograd/gradcheck.hpp"
#include "ops/ops.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

TEST(Composite, DiamondSumsBothBranches) {
  // y = sum(x * x + x): dy/dx = 2x + 1, through add's two inputs sharing x.
  Variable x(Tensor::from({3}, {0.5, -2.0, 3.0}, DType::Float64), true);
  sum(add(mul(x, x), x)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, -3, 7}));
}

TEST(Composite, DiamondOfRealOpsMatchesNumeric) {
  Generator gen(60);
  // x feeds a linear branch and a log_softmax branch, which are added.
  std::vector<Variable> inputs{random_variable({3, 4}, gen), random_variable({4, 4}, gen)};
  auto f = [](const std::vector<Variable>& v) {
    return add(linear(v[0], v[1]), log_softmax(v[0], 1));
  };
  auto result = gradcheck(f, inputs);
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(Composite, WeightUsedTwiceMatchesNumeric) {
  Generator gen(61);
  // linear(linear(x, W), W): W gets the sum of the gradients of both uses.
  std::vector<Variable> inputs{random_variable({2, 5}, gen), random_variable({5, 5}, gen),
                               random_variable({5}, gen)};
  auto f = [](const std::vector<Variable>& v) {
    return linear(linear(v[0], v[1], v[2]), v[1], v[2]);
  };
  auto result = gradcheck(f, inputs);
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(Composite, WeightUsedTwiceGetsBothContributions) {
  // Scalars as 1x1 matrices: y = w (w x) = w^2 x, so dy/dw = 2 w x.
  Variable x(Tensor::from({1, 1}, {3.0}, DType::Float64));
  Variable w(Tensor::from({1, 1}, {5.0}, DType::Float64), true);
  linear(linear(x, w), w).backward();
  EXPECT_DOUBLE_EQ(w.grad().item(), 30.0);
}

TEST(Composite, ChainOf100000RealOpsBackwardsWithExactGradient) {
  Variable x(Tensor::from({2}, {0.5, 1.5}, DType::Float64), true);
  Variable tiny(Tensor::full({1}, 1e-6, DType::Float64));  // a constant, broadcast
  Variable y = x;
  // 50,000 x (add, relu) = 100,000 nodes; the values stay positive, so every local derivative
  // is exactly 1 and so is the gradient.
  for (int i = 0; i < 50000; ++i) y = relu(add(y, tiny));
  EXPECT_EQ(reverse_topological_order(y).size(), 100001u);
  EXPECT_NEAR(y.value().at(0), 0.55, 1e-9);
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 1}));
  y = Variable();  // releasing the chain must not recurse either
}

TEST(Composite, NoGradForwardRecordsNoNode) {
  Generator gen(62);
  Variable x = random_variable({2, 4}, gen), w = random_variable({3, 4}, gen), b = random_variable({3}, gen);
  const std::vector<std::int64_t> targets{0, 2};
  Variable loss;
  {
    NoGradGuard no_grad;
    loss = nll_loss(log_softmax(relu(linear(x, w, b)), 1), targets);
  }
  EXPECT_TRUE(loss.is_leaf());
  EXPECT_FALSE(loss.requires_grad());
  EXPECT_THROW(loss.backward(), std::invalid_argument);
  // Nothing saved the inputs: each value is held by its Variable alone.
  EXPECT_TRUE(x.value().is_unique());
  EXPECT_TRUE(w.value().is_unique());
  // The guard is gone: the same forward records again.
  EXPECT_FALSE(nll_loss(log_softmax(relu(linear(x, w, b)), 1), targets).is_leaf());
}

// ---- LeNet-5, written directly with ops, in float64 ----

namespace {

struct LeNetParameters {
  Variable conv1_w, conv1_b, conv2_w, conv2_b, fc1_w, fc1_b, fc2_w, fc2_b, fc3_w, fc3_b;

  // PyTorch's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
  explicit LeNetParameters(Generator& gen) {
    auto param = [&](Shape shape, double fan_in, const char* name) {
      const double bound = 1 / std::sqrt(fan_in);
      return Variable(Tensor::uniform(std::move(shape), -bound, bound, gen, DType::Float64), true,
                      name);
    };
    conv1_w = param({6, 1, 5, 5}, 25, "conv1.weight");
    conv1_b = param({6}, 25, "conv1.bias");
    conv2_w = param({16, 6, 5, 5}, 150, "conv2.weight");
    conv2_b = param({16}, 150, "conv2.bias");
    fc1_w = param({120, 400}, 400, "fc1.weight");
    fc1_b = param({120}, 400, "fc1.bias");
    fc2_w = param({84, 120}, 120, "fc2.weight");
    fc2_b = param({84}, 120, "fc2.bias");
    fc3_w = param({10, 84}, 84, "fc3.weight");
    fc3_b = param({10}, 84, "fc3.bias");
  }
  std::vector<Variable> all() const {
    return {conv1_w, conv1_b, conv2_w, conv2_b, fc1_w, fc1_b, fc2_w, fc2_b, fc3_w, fc3_b};
  }
};

// Two float64 images and their targets under seed 8, whose forward keeps well away from relu kinks
// and pool ties (see Composite.LeNet5LossGradientsMatchNumericForEveryParameter).
struct SeedEightBatch {
  Generator gen{8};
  const LeNetParameters params{gen};
  const Variable images{Tensor::uniform({2, 1, 28, 28}, 0, 1, gen, DType::Float64)};
  const std::vector<std::int64_t> targets{3, 8};
};

// The inputs of every relu, in order, recorded by a forward for the kink and tie checks.
struct ReluInputs {
  Tensor conv1, conv2, fc1, fc2;
};

// p holds the parameters in LeNetParameters::all() order.
Variable lenet_loss(const Variable& images, const std::vector<Variable>& p,
                    const std::vector<std::int64_t>& targets, ReluInputs* relu_inputs = nullptr) {
  Variable z1 = conv2d(images, p[0], p[1], /*stride=*/1, /*padding=*/2);  // [N, 6, 28, 28]
  Variable x = max_pool2d(relu(z1), 2);                                  // [N, 6, 14, 14]
  Variable z2 = conv2d(x, p[2], p[3]);                                   // [N, 16, 10, 10]
  x = flatten(max_pool2d(relu(z2), 2));                                  // [N, 400]
  Variable z3 = linear(x, p[4], p[5]);                                   // [N, 120]
  Variable z4 = linear(relu(z3), p[6], p[7]);                            // [N, 84]
  Variable logits = linear(relu(z4), p[8], p[9]);                        // [N, 10]
  if (relu_inputs) *relu_inputs = {z1.value(), z2.value(), z3.value(), z4.value()};
  return nll_loss(log_softmax(logits, 1), targets);                      // []
}

// The smallest |z| over the relu inputs: how far the nearest one is from the kink at 0.
double distance_to_kink(const Tensor& z) {
  double closest = std::numeric_limits<double>::infinity();
  for (double v : z.to_vector()) closest = std::min(closest, std::abs(v));
  return closest;
}

// The smallest gap between the largest and the second largest relu(z) over the 2x2 pooling
// windows of z:[N, C, H, W] whose maximum is positive. (Windows whose values are all clamped to 0
// tie harmlessly: no gradient flows through them, and distance_to_kink keeps them clamped.)
double distance_to_pool_tie(const Tensor& z) {
  const std::int64_t planes = z.shape()[0] * z.shape()[1], H = z.shape()[2], W = z.shape()[3];
  const std::vector<double> values = z.to_vector();
  double closest = std::numeric_limits<double>::infinity();
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t i = 0; i + 1 < H; i += 2)
      for (std::int64_t j = 0; j + 1 < W; j += 2) {
        std::vector<double> window;
        for (std::int64_t di = 0; di < 2; ++di)
          for (std::int64_t dj = 0; dj < 2; ++dj)
            window.push_back(std::max(0.0, values[static_cast<std::size_t>(
                                               (p * H + i + di) * W + j + dj)]));
        std::sort(window.begin(), window.end(), std::greater<>());
        if (window[0] > 0) closest = std::min(closest, window[0] - window[1]);
      }
  return closest;
}

}  // namespace

TEST(Composite, LeNet5LossGradientsMatchNumericForEveryParameter) {
  // gradcheck nudges one parameter by +-1e-6, which moves any relu input or pooled value by
  // about 1e-6 times its sensitivity to that parameter (a few units here: inputs in [0, 1),
  // weights below 1/sqrt(fan_in)). Seed 8 gives a forward whose relu inputs and pool windows are
  // all more than kMargin = 1e-4 (100 nudges) from a kink or a tie, checked below; of seeds 0-39
  // it is the only one with such a margin (the others come within 2e-5 to 4e-5), so changing the
  // seed or the shapes means re-checking the margin.
  const SeedEightBatch batch;
  const LeNetParameters& params = batch.params;
  const Variable& images = batch.images;
  const std::vector<std::int64_t>& targets = batch.targets;

  constexpr double kMargin = 1e-4;
  ReluInputs z;
  {
    NoGradGuard no_grad;
    lenet_loss(images, params.all(), targets, &z);
  }
  EXPECT_GT(distance_to_kink(z.conv1), kMargin);
  EXPECT_GT(distance_to_kink(z.conv2), kMargin);
  EXPECT_GT(distance_to_kink(z.fc1), kMargin);
  EXPECT_GT(distance_to_kink(z.fc2), kMargin);
  EXPECT_GT(distance_to_pool_tie(z.conv1), kMargin);
  EXPECT_GT(distance_to_pool_tie(z.conv2), kMargin);

  // Each parameter's gradient must be well above gradcheck's atol, or agreement would be vacuous.
  const std::vector<Variable> p = params.all();
  lenet_loss(images, p, targets).backward();
  for (const Variable& v : p) {
    double largest = 0;
    for (double g : v.grad().to_vector()) largest = std::max(largest, std::abs(g));
    EXPECT_GT(largest, 1e-3) << v.name();
  }

  GradcheckOptions options{.max_elements_per_input = 40};
  auto result = gradcheck(
      [&](const std::vector<Variable>& v) { return lenet_loss(images, v, targets); }, p,
      options);
  EXPECT_TRUE(result.ok) << result.message;
  // 40 of each weight and of the larger biases, all 6, 16 and 10 of the small ones; one output.
  EXPECT_EQ(result.checked, 7 * 40 + 6 + 16 + 10);
}

// ---- The optimiser step and the backward, in either order ----

namespace {

// What SGD does (models/nn/optim.cpp): w -= lr * grad, written through mutable_value().
void sgd_step(const std::vector<Variable>& params, double lr) {
  for (Variable p : params) {
    double* w = p.mutable_value().data<double>();
    for (std::int64_t i = 0; i < p.value().numel(); ++i)
      w[i] -= lr * (p.has_grad() ? p.grad().at(i) : 1.0);
  }
}

}  // namespace

TEST(Composite, OptimiserStepBeforeBackwardThrowsNamingTheFirstWeightTheBackwardReads) {
  const SeedEightBatch batch;
  const LeNetParameters& params = batch.params;
  const Variable& images = batch.images;
  const std::vector<std::int64_t>& targets = batch.targets;
  const std::vector<Variable> p = params.all();
  const Variable loss = lenet_loss(images, p, targets);  // fused convolutions
  sgd_step(p, 0.01);
  // The backward runs from the loss down: fc3's linear is the first to read a saved parameter.
  expect_starts_with(thrown_message([&] { loss.backward(); }),
                     "linear: input 1 ('fc3.weight'), saved for backward at version 0, was "
                     "modified in place since (now version 1); run backward before modifying it");
}

TEST(Composite, TrainingStepsInTheRightOrderRaiseNothing) {
  const SeedEightBatch batch;
  const LeNetParameters& params = batch.params;
  const Variable& images = batch.images;
  const std::vector<std::int64_t>& targets = batch.targets;
  const std::vector<Variable> p = params.all();
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 5; ++step) {
    for (Variable v : p) v.zero_grad();
    const Variable loss = lenet_loss(images, p, targets);
    ASSERT_NO_THROW(loss.backward()) << "step " << step;
    sgd_step(p, 0.05);
    (step == 0 ? first_loss : last_loss) = loss.value().item();
  }
  EXPECT_LT(last_loss, first_loss);  // the steps reached the parameters the next forward read
}
