// The curvature pass (backward_with_curvature) against independent float64 computations. Each op's
// rule is checked under E = sum((f(X) - t)^2): E's Hessian in y is 2 I, so the diagonal of d2E/dx2
// is 2 sum_j (dy_j/dx_k)^2 + 2 sum_j (y_j - t_j) d2y_j/dx_k^2, both sums taken from differences of
// f's forward alone; the Gauss-Newton rules (relu, tanh, sigmoid) keep the first sum. Also: the
// linear layer against differences of its gradient, what Gauss-Newton means in a two-layer net,
// the 1998 RBF output under nll_loss, the errors, and wrong rules that the checks catch.
#include "autograd/engine.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ops/fusion/fusion.hpp"
#include "ops/ops.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;
using ::testing::HasSubstr;

namespace {

using OpFunction = std::function<Variable(const std::vector<Variable>&)>;

/// What a rule must give for d2E/dx_k^2 with E = sum((f(X) - t)^2).
enum class Expect {
  /// The exact diagonal, d2y_j/dx_k^2 from second differences (exp, pow, logsumexp).
  Exact,
  /// The exact diagonal of an op linear in each input element (d2y_j/dx_k^2 = 0, which is
  /// checked by second differences too): 2 sum_j (dy_j/dx_k)^2.
  LinearInEach,
  /// The first term only, 2 sum_j (dy_j/dx_k)^2 (relu, tanh, sigmoid).
  GaussNewton,
};

struct CurvatureCheck {
  bool ok = true;
  std::string message;       // the first mismatch: input, element, the pass's value vs expected
  std::int64_t checked = 0;  // elements compared
  double worst_ratio = 0;    // max |pass - expected| / tolerance; > 1 fails
};

constexpr double kEpsJacobian = 1e-6;  // central differences of the forward: dy/dx
constexpr double kEpsSecond = 1e-4;    // second differences of the forward: d2y/dx2
// |pass - expected| <= rtol |expected| + atol: tight where only first differences enter.
constexpr double kRtolFirst = 1e-6, kAtolFirst = 1e-9;
constexpr double kRtolSecond = 1e-4, kAtolSecond = 1e-6;

// f's output for the current input values, recording nothing.
std::vector<double> forward(const OpFunction& f, const std::vector<Variable>& inputs) {
  NoGradGuard no_grad;
  return f(inputs).value().to_vector();
}

// f's outputs with element k of input x set to x_k + delta, then x_k restored exactly.
std::vector<double> forward_nudged(const OpFunction& f, const std::vector<Variable>& inputs,
                                   Variable x, std::int64_t k, double delta) {
  const double original = x.value().at(k);
  x.mutable_value().set(k, original + delta);
  std::vector<double> y = forward(f, inputs);
  x.mutable_value().set(k, original);
  return y;
}

// The pass's curvature of every input of E = sum((f(X) - t)^2), recorded under a CurvatureGuard.
std::vector<Tensor> pass_curvature(const OpFunction& f, const std::vector<Variable>& inputs,
                                   const Tensor& target) {
  for (Variable x : inputs) {
    x.mutable_grad() = Tensor{};
    x.mutable_curvature() = Tensor{};
  }
  {
    CurvatureGuard curvature;
    const Variable error = ag::sum(ag::pow(sub(f(inputs), Variable(target)), 2.0));
    backward_with_curvature(error);
  }
  std::vector<Tensor> curvatures;
  for (const Variable& x : inputs) curvatures.push_back(x.curvature());
  return curvatures;
}

/// Compares, for every element k of every input that requires grad, the pass's curvature of
/// E = sum((f(X) - t)^2) (t fixed random, of y's shape) with
///   2 sum_j J[j,k]^2 (+ 2 sum_j (y_j - t_j) S[j,k] for Expect::Exact),
/// J by central differences of f (eps 1e-6), S by second differences (e 1e-4). Inputs float64.
CurvatureCheck check_curvature(const OpFunction& f, const std::vector<Variable>& inputs,
                               Expect expect) {
  Tensor y_value;
  {
    NoGradGuard no_grad;
    y_value = f(inputs).value();
  }
  const std::vector<double> y = y_value.to_vector();
  Generator gen(/*seed=*/2024);
  const Tensor target = Tensor::uniform(y_value.shape(), -1, 1, gen, DType::Float64);
  const std::vector<double> t = target.to_vector();
  const std::vector<Tensor> curvatures = pass_curvature(f, inputs, target);

  CurvatureCheck result;
  const auto mismatch = [&](std::size_t i, std::int64_t k, const std::string& what, double pass,
                            double expected) {
    if (!result.ok) return;
    result.ok = false;
    std::ostringstream out;
    out.precision(10);
    out << "input " << i << " of shape " << shape_str(inputs[i].shape()) << ", element " << k
        << ": " << what << " " << pass << " vs expected " << expected;
    result.message = out.str();
  };
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Variable& x = inputs[i];
    if (!x.requires_grad()) continue;
    const Tensor& h = curvatures[i];
    if (!h.defined() || h.shape() != x.shape()) {
      result.ok = false;
      result.message = "input " + std::to_string(i) + ": the pass left no curvature of its shape";
      return result;
    }
    for (std::int64_t k = 0; k < x.value().numel(); ++k) {
      const std::vector<double> up = forward_nudged(f, inputs, x, k, kEpsJacobian);
      const std::vector<double> down = forward_nudged(f, inputs, x, k, -kEpsJacobian);
      double first = 0;  // 2 sum_j J[j,k]^2
      for (std::size_t j = 0; j < y.size(); ++j) {
        const double jacobian = (up[j] - down[j]) / (2 * kEpsJacobian);
        first += 2 * jacobian * jacobian;
      }
      double second = 0;  // 2 sum_j (y_j - t_j) S[j,k]
      if (expect != Expect::GaussNewton) {
        const std::vector<double> far_up = forward_nudged(f, inputs, x, k, kEpsSecond);
        const std::vector<double> far_down = forward_nudged(f, inputs, x, k, -kEpsSecond);
        for (std::size_t j = 0; j < y.size(); ++j)
          second +=
              2 * (y[j] - t[j]) * (far_up[j] - 2 * y[j] + far_down[j]) / (kEpsSecond * kEpsSecond);
      }
      const double pass = h.at(k);
      double expected = first, tolerance = kRtolFirst * std::abs(first) + kAtolFirst;
      if (expect == Expect::Exact) {
        expected = first + second;
        tolerance = kRtolSecond * std::abs(expected) + kAtolSecond;
      } else if (expect == Expect::LinearInEach &&
                 std::abs(second) > kRtolSecond * std::abs(first) + kAtolSecond) {
        mismatch(i, k, "second-derivative term of an op assumed linear", second, 0);
      }
      const double ratio = std::abs(pass - expected) / tolerance;
      result.worst_ratio = std::max(result.worst_ratio, ratio);
      ++result.checked;
      if (!(ratio <= 1)) mismatch(i, k, "curvature", pass, expected);
    }
  }
  return result;
}

// Fixed random float64 inputs that require grad; `away_from_zero` keeps |x| >= 0.1 (relu's kink).
Variable random_input(Shape shape, std::uint64_t seed, double low = -1, double high = 1) {
  Generator gen(seed);
  return random_variable(std::move(shape), gen, /*requires_grad=*/true, low, high);
}
Variable away_from_zero(Shape shape, std::uint64_t seed) {
  Variable x = random_input(std::move(shape), seed);
  for (std::int64_t k = 0; k < x.value().numel(); ++k) {
    const double v = x.value().at(k);
    x.mutable_value().set(k, v + (v < 0 ? -0.1 : 0.1));
  }
  return x;
}

void expect_curvature(const OpFunction& f, const std::vector<Variable>& inputs, Expect expect) {
  const CurvatureCheck check = check_curvature(f, inputs, expect);
  EXPECT_TRUE(check.ok) << check.message;
  EXPECT_GT(check.checked, 0);
}
// expect_curvature, with the calling line in the failure's trace (arguments hold braced lists).
#define EXPECT_CURVATURE(...)      \
  do {                             \
    SCOPED_TRACE("checked here");  \
    expect_curvature(__VA_ARGS__); \
  } while (false)

// The gradient of E = error() for x from ag::backward.
Tensor gradient(const std::function<Variable()>& error, const Variable& x) {
  Variable input = x;
  input.mutable_grad() = Tensor{};
  error().backward();
  return x.grad();
}

// d(dE/dx_k)/dx_k by central differences of ag::backward's gradient: the exact Hessian diagonal.
std::vector<double> hessian_diagonal(const std::function<Variable()>& error, Variable x,
                                     double eps) {
  std::vector<double> diagonal;
  for (std::int64_t k = 0; k < x.value().numel(); ++k) {
    const double original = x.value().at(k);
    x.mutable_value().set(k, original + eps);
    const double up = gradient(error, x).at(k);
    x.mutable_value().set(k, original - eps);
    const double down = gradient(error, x).at(k);
    x.mutable_value().set(k, original);
    diagonal.push_back((up - down) / (2 * eps));
  }
  return diagonal;
}

// The pass's curvature of x for E = error(), recorded under a CurvatureGuard.
std::vector<double> pass_curvature_of(const std::function<Variable()>& error,
                                      const std::vector<Variable>& xs, std::size_t which) {
  for (Variable x : xs) {
    x.mutable_grad() = Tensor{};
    x.mutable_curvature() = Tensor{};
  }
  CurvatureGuard curvature;
  backward_with_curvature(error());
  return xs[which].curvature().to_vector();
}

}  // namespace

// ---- The checker itself: it passes a correct rule and fails wrong ones. ----

namespace {

// y = tanh(x) through record(), with a correct backward and a curvature rule that may forget to
// square the slope: (1 - y^2) h instead of (1 - y^2)^2 h.
Variable tanh_with_rule(const Variable& x, bool square_the_slope) {
  Tensor y = x.value().clone();
  for (std::int64_t k = 0; k < y.numel(); ++k) y.set(k, std::tanh(y.at(k)));
  return record(
      y, "tanh", {x},
      [y](const Tensor& dy, const GradMask&) {
        Tensor dx = dy.clone();
        for (std::int64_t k = 0; k < dx.numel(); ++k) dx.set(k, dy.at(k) * (1 - y.at(k) * y.at(k)));
        return TensorList{dx};
      },
      [y, square_the_slope](const Tensor& h, const Tensor&, const GradMask&) {
        Tensor hx = h.clone();
        for (std::int64_t k = 0; k < hx.numel(); ++k) {
          const double slope = 1 - y.at(k) * y.at(k);
          hx.set(k, (square_the_slope ? slope * slope : slope) * h.at(k));
        }
        return TensorList{hx};
      });
}

// y = exp(x) through record(), whose rule may drop the second-derivative term y g.
Variable exp_with_rule(const Variable& x, bool with_second_derivative) {
  Tensor y = x.value().clone();
  for (std::int64_t k = 0; k < y.numel(); ++k) y.set(k, std::exp(y.at(k)));
  return record(
      y, "exp", {x},
      [y](const Tensor& dy, const GradMask&) {
        Tensor dx = dy.clone();
        for (std::int64_t k = 0; k < dx.numel(); ++k) dx.set(k, dy.at(k) * y.at(k));
        return TensorList{dx};
      },
      [y, with_second_derivative](const Tensor& h, const Tensor& g, const GradMask&) {
        Tensor hx = h.clone();
        for (std::int64_t k = 0; k < hx.numel(); ++k)
          hx.set(k, y.at(k) * y.at(k) * h.at(k) + (with_second_derivative ? y.at(k) * g.at(k) : 0));
        return TensorList{hx};
      });
}

}  // namespace

TEST(CurvatureChecker, PassesACorrectCustomRule) {
  EXPECT_CURVATURE([](const auto& v) { return tanh_with_rule(v[0], /*square_the_slope=*/true); },
                   {random_input({2, 3}, 1, 0.5, 1.5)}, Expect::GaussNewton);
  EXPECT_CURVATURE(
      [](const auto& v) { return exp_with_rule(v[0], /*with_second_derivative=*/true); },
      {random_input({5}, 2)}, Expect::Exact);
}

TEST(CurvatureChecker, CatchesARuleThatForgetsToSquareTheSlope) {
  // x in [0.5, 1.5): 1 - y^2 is at most 0.79, so (1 - y^2) h is at least 1.27 times too large.
  const CurvatureCheck check = check_curvature(
      [](const auto& v) { return tanh_with_rule(v[0], /*square_the_slope=*/false); },
      {random_input({2, 3}, 1, 0.5, 1.5)}, Expect::GaussNewton);
  ASSERT_FALSE(check.ok);
  EXPECT_THAT(check.message, HasSubstr("input 0 of shape [2, 3], element 0: curvature"));
  EXPECT_GT(check.worst_ratio, 1e5);
}

TEST(CurvatureChecker, CatchesARuleThatDropsTheSecondDerivativeTerm) {
  const CurvatureCheck check = check_curvature(
      [](const auto& v) { return exp_with_rule(v[0], /*with_second_derivative=*/false); },
      {random_input({5}, 2)}, Expect::Exact);
  ASSERT_FALSE(check.ok);
  EXPECT_THAT(check.message, HasSubstr("input 0 of shape [5]"));
}

TEST(CurvatureChecker, CatchesAnOpThatIsNotLinearWhenLinearIsClaimed) {
  // exp's rule is right, but its d2y/dx2 = y is not 0: the second differences say so.
  const CurvatureCheck check = check_curvature([](const auto& v) { return ag::exp(v[0]); },
                                               {random_input({4}, 3)}, Expect::LinearInEach);
  ASSERT_FALSE(check.ok);
  EXPECT_THAT(check.message, HasSubstr("second-derivative term of an op assumed linear"));
}

// ---- Element-wise arithmetic ----

TEST(CurvatureArithmetic, AddWithSameShapesAndBroadcasts) {
  EXPECT_CURVATURE([](const auto& v) { return add(v[0], v[1]); },
                   {random_input({2, 3}, 1), random_input({2, 3}, 2)}, Expect::LinearInEach);
  // b:[3, 1] is shared by the 4 columns of each row and both batch entries: 8 terms each.
  EXPECT_CURVATURE([](const auto& v) { return add(v[0], v[1]); },
                   {random_input({2, 3, 4}, 3), random_input({3, 1}, 4)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return add(v[0], v[1]); },
                   {random_input({1}, 5), random_input({3, 5}, 6)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return v[0] + 1.5; }, {random_input({4}, 7)},
                   Expect::LinearInEach);
}

TEST(CurvatureArithmetic, SubWithSameShapesAndBroadcasts) {
  EXPECT_CURVATURE([](const auto& v) { return sub(v[0], v[1]); },
                   {random_input({3, 2}, 1), random_input({3, 2}, 2)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return sub(v[0], v[1]); },
                   {random_input({3, 4}, 3), random_input({1, 4}, 4)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return 2.0 - v[0]; }, {random_input({5}, 5)},
                   Expect::LinearInEach);
}

TEST(CurvatureArithmetic, MulIncludingASharedWeight) {
  EXPECT_CURVATURE([](const auto& v) { return mul(v[0], v[1]); },
                   {random_input({2, 3}, 1), random_input({2, 3}, 2)}, Expect::LinearInEach);
  // w:[4] multiplies every row: its curvature sums the 3 rows' terms, which is exact here because
  // E's Hessian in y is diagonal.
  EXPECT_CURVATURE([](const auto& v) { return mul(v[0], v[1]); },
                   {random_input({3, 4}, 3), random_input({4}, 4)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return mul(v[0], v[1]); },
                   {random_input({2, 3, 2, 2}, 5), random_input({3, 1, 1}, 6)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return mul(v[0], v[1]); },
                   {random_input({1}, 7), random_input({5}, 8)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return v[0] * 0.7; }, {random_input({2, 2}, 9)},
                   Expect::LinearInEach);
}

TEST(CurvatureArithmetic, Neg) {
  EXPECT_CURVATURE([](const auto& v) { return neg(v[0]); }, {random_input({5}, 1)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return -v[0]; }, {random_input({2, 3}, 2)},
                   Expect::LinearInEach);
}

TEST(CurvatureArithmetic, ExpIsExact) {
  EXPECT_CURVATURE([](const auto& v) { return ag::exp(v[0]); }, {random_input({7}, 1)},
                   Expect::Exact);
  EXPECT_CURVATURE([](const auto& v) { return ag::exp(v[0]); }, {random_input({2, 3}, 2)},
                   Expect::Exact);
}

TEST(CurvatureArithmetic, PowIsExactForEachExponent) {
  for (const double p : {2.0, 3.0, -1.0}) {
    SCOPED_TRACE("exponent " + std::to_string(p));
    EXPECT_CURVATURE([p](const auto& v) { return ag::pow(v[0], p); }, {away_from_zero({2, 3}, 1)},
                     Expect::Exact);
  }
  // Non-integer exponents on positive x.
  for (const double p : {0.5, 1.5, -0.5}) {
    SCOPED_TRACE("exponent " + std::to_string(p));
    EXPECT_CURVATURE([p](const auto& v) { return ag::pow(v[0], p); },
                     {random_input({5}, 2, 0.5, 2.0)}, Expect::Exact);
  }
  EXPECT_CURVATURE([](const auto& v) { return ag::pow(v[0], 1.0); }, {random_input({4}, 3)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return ag::pow(v[0], 0.0); }, {random_input({4}, 4)},
                   Expect::LinearInEach);
}

// ---- Activations: Gauss-Newton ----

TEST(CurvatureActivation, ReluIsGaussNewton) {
  EXPECT_CURVATURE([](const auto& v) { return relu(v[0]); }, {away_from_zero({2, 5}, 1)},
                   Expect::GaussNewton);
  EXPECT_CURVATURE([](const auto& v) { return relu(v[0]); }, {away_from_zero({1, 3, 2, 2}, 2)},
                   Expect::GaussNewton);
}

TEST(CurvatureActivation, TanhIsGaussNewton) {
  EXPECT_CURVATURE([](const auto& v) { return ag::tanh(v[0]); }, {random_input({2, 5}, 1, -2, 2)},
                   Expect::GaussNewton);
  EXPECT_CURVATURE([](const auto& v) { return ag::tanh(v[0]); }, {random_input({7}, 2, -2, 2)},
                   Expect::GaussNewton);
}

TEST(CurvatureActivation, SigmoidIsGaussNewton) {
  EXPECT_CURVATURE([](const auto& v) { return sigmoid(v[0]); }, {random_input({3, 3}, 1, -3, 3)},
                   Expect::GaussNewton);
  EXPECT_CURVATURE([](const auto& v) { return sigmoid(v[0]); }, {random_input({1, 4}, 2, -3, 3)},
                   Expect::GaussNewton);
}

TEST(CurvatureActivation, ScaledTanhIsGaussNewton) {
  EXPECT_CURVATURE([](const auto& v) { return scaled_tanh(v[0], 1.7159, 2.0 / 3); },
                   {random_input({2, 5}, 1, -3, 3)}, Expect::GaussNewton);
  EXPECT_CURVATURE([](const auto& v) { return scaled_tanh(v[0], -0.5, 3); },
                   {random_input({7}, 2, -1, 1)}, Expect::GaussNewton);
}

TEST(CurvatureActivation, GaussNewtonIsNotTheExactDiagonal) {
  // tanh's own d2y/dx2 = -2 y (1 - y^2) is dropped on purpose: the exact check must fail.
  const CurvatureCheck check = check_curvature([](const auto& v) { return ag::tanh(v[0]); },
                                               {random_input({2, 5}, 1, -2, 2)}, Expect::Exact);
  EXPECT_FALSE(check.ok);
  EXPECT_FALSE(check_curvature([](const auto& v) { return scaled_tanh(v[0], 1.7159, 2.0 / 3); },
                               {random_input({2, 5}, 1, -3, 3)}, Expect::Exact)
                   .ok);
}

// ---- Reductions ----

TEST(CurvatureReduce, SumOfAllElementsAndOverDims) {
  EXPECT_CURVATURE([](const auto& v) { return ag::sum(v[0]); }, {random_input({2, 3}, 1)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return ag::sum(v[0], {1}); }, {random_input({2, 3, 4}, 2)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE(
      [](const auto& v) { return ag::sum(v[0], {0, 2}, /*keepdim=*/true); },
      {random_input({2, 3, 4}, 3)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return ag::sum(v[0], {-1}, /*keepdim=*/true); },
                   {random_input({3, 5}, 4)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return ag::sum(v[0], {}); }, {random_input({2, 2, 3}, 5)},
                   Expect::LinearInEach);
}

TEST(CurvatureReduce, MeanOfAllElementsAndOverDims) {
  EXPECT_CURVATURE([](const auto& v) { return ag::mean(v[0]); }, {random_input({3, 5}, 1)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE(
      [](const auto& v) { return ag::mean(v[0], {1, 2}, /*keepdim=*/true); },
      {random_input({2, 3, 4}, 2)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return ag::mean(v[0], {0}); }, {random_input({5, 3}, 3)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return ag::mean(v[0], {-1}); }, {random_input({1, 7}, 4)},
                   Expect::LinearInEach);
}

TEST(CurvatureReduce, LogsumexpIsExact) {
  // Each x_k feeds one y, so E's d2E/dx_k^2 = 2 (dy/dx_k)^2 + 2 (y - t) d2y/dx_k^2 exactly, and
  // the rule's p^2 h + p (1 - p) g is that.
  EXPECT_CURVATURE([](const auto& v) { return logsumexp(v[0], 1); },
                   {random_input({3, 5}, 1, -2, 2)}, Expect::Exact);
  EXPECT_CURVATURE([](const auto& v) { return logsumexp(v[0], 0, /*keepdim=*/true); },
                   {random_input({4, 2}, 2, -2, 2)}, Expect::Exact);
  EXPECT_CURVATURE([](const auto& v) { return logsumexp(v[0], -1); },
                   {random_input({2, 3, 4}, 3, -2, 2)}, Expect::Exact);
  EXPECT_CURVATURE([](const auto& v) { return logsumexp(v[0], 1); }, {random_input({1, 1}, 4)},
                   Expect::Exact);
}

// ---- Pooling, shapes, linear, conv2d, loss ----

TEST(CurvaturePool, AvgPool2dWithAndWithoutOverlap) {
  // kernel 3, stride 1: an inner element is in 9 windows.
  EXPECT_CURVATURE([](const auto& v) { return avg_pool2d(v[0], 3, 1); },
                   {random_input({1, 1, 5, 5}, 1)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return avg_pool2d(v[0], 3, 2); },
                   {random_input({2, 2, 7, 5}, 2)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return avg_pool2d(v[0], 2); },
                   {random_input({2, 3, 6, 6}, 3)}, Expect::LinearInEach);
}

TEST(CurvaturePool, Subsampling2dIsExactForEachInput) {
  // y is linear in x, in the weight and in the bias separately: the rule is the exact diagonal,
  // a weight shared by a channel's windows summing their terms.
  const auto subsample = [](std::int64_t kernel, std::int64_t stride) {
    return [=](const std::vector<Variable>& v) {
      return subsampling2d(v[0], v[1], v.size() > 2 ? v[2] : Variable{}, kernel, stride);
    };
  };
  EXPECT_CURVATURE(subsample(2, 0),
                   {random_input({2, 3, 4, 6}, 1), random_input({3}, 2), random_input({3}, 3)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE(subsample(3, 2), {random_input({1, 2, 7, 7}, 4), random_input({2}, 5)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE(subsample(2, 1),
                   {random_input({2, 1, 5, 4}, 6), random_input({1}, 7), random_input({1}, 8)},
                   Expect::LinearInEach);
}

namespace {

// subsampling2d (2x2 windows, no bias) through record(), with a correct backward and a curvature
// rule that may forget to square the weight for x: weight h instead of weight^2 h.
Variable subsampling_with_rule(const Variable& x, const Variable& w, bool square_the_weight) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = subsampling2d(x.detach(), w.detach(), Variable{}, 2).value();
  }
  const Shape x_shape = x.shape();
  const auto spread = [x_shape](const Tensor& t, const Tensor& w, bool square) {
    Tensor dx(x_shape, DType::Float64);
    for (std::int64_t k = 0; k < dx.numel(); ++k) {
      const std::int64_t col = k % x_shape[3], row = k / x_shape[3] % x_shape[2];
      const std::int64_t plane = k / (x_shape[2] * x_shape[3]);
      const double weight = w.at(plane % x_shape[1]);
      dx.set(k, t.at((plane * (x_shape[2] / 2) + row / 2) * (x_shape[3] / 2) + col / 2) *
                    (square ? weight * weight : weight));
    }
    return dx;
  };
  const Tensor w_value = w.value();
  return record(
      y, "subsampling2d", {x},
      [spread, w_value](const Tensor& dy, const GradMask&) {
        return TensorList{spread(dy, w_value, false)};
      },
      [spread, w_value, square_the_weight](const Tensor& h, const Tensor&, const GradMask&) {
        return TensorList{spread(h, w_value, square_the_weight)};
      });
}

}  // namespace

TEST(CurvaturePool, CatchesASubsamplingRuleThatForgetsToSquareTheWeight) {
  const Variable w(Tensor::from({2}, {0.5, -1.5}, DType::Float64));
  const auto op = [&w](bool square) {
    return [&w, square](const std::vector<Variable>& v) {
      return subsampling_with_rule(v[0], w, square);
    };
  };
  EXPECT_CURVATURE(op(true), {random_input({1, 2, 4, 4}, 1)}, Expect::LinearInEach);
  const CurvatureCheck check =
      check_curvature(op(false), {random_input({1, 2, 4, 4}, 1)}, Expect::LinearInEach);
  ASSERT_FALSE(check.ok);
  EXPECT_THAT(check.message, HasSubstr("input 0 of shape [1, 2, 4, 4], element 0: curvature"));
}

TEST(CurvatureShape, ReshapeAndFlatten) {
  EXPECT_CURVATURE(
      [](const auto& v) { return reshape(v[0], {4, 6}); },
      {random_input({2, 3, 4}, 1)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return flatten(v[0]); }, {random_input({2, 3, 2, 2}, 2)},
                   Expect::LinearInEach);
}

TEST(CurvatureShape, CatOfThreeInputs) {
  EXPECT_CURVATURE(
      [](const auto& v) { return cat({v[0], v[1], v[2]}, 1); },
      {random_input({2, 1, 3}, 1), random_input({2, 2, 3}, 2), random_input({2, 3, 3}, 3)},
      Expect::LinearInEach);
  EXPECT_CURVATURE(
      [](const auto& v) { return cat({v[0], v[1], v[2]}, 0); },
      {random_input({1, 2}, 4), random_input({2, 2}, 5), random_input({1, 2}, 6)},
      Expect::LinearInEach);
  // x enters twice in different slices of y: each slice's terms add up, exactly.
  EXPECT_CURVATURE(
      [](const auto& v) { return cat({v[0], v[1], v[0]}, -1); },
      {random_input({2, 2}, 7), random_input({2, 3}, 8)}, Expect::LinearInEach);
}

TEST(CurvatureShape, Pad2d) {
  EXPECT_CURVATURE([](const auto& v) { return pad2d(v[0], 2, -0.1); },
                   {random_input({2, 3, 3, 4}, 1)}, Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return pad2d(v[0], 1); }, {random_input({1, 1, 2, 2}, 2)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return pad2d(v[0], 0, 3.0); },
                   {random_input({1, 2, 2, 3}, 3)}, Expect::LinearInEach);
}

TEST(CurvatureLinear, WithAndWithoutBias) {
  const auto layer = [](const auto& v) { return linear(v[0], v[1], v[2]); };
  EXPECT_CURVATURE(layer, {random_input({1, 5}, 1), random_input({3, 5}, 2), random_input({3}, 3)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE(layer, {random_input({4, 7}, 4), random_input({5, 7}, 5), random_input({5}, 6)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE([](const auto& v) { return linear(v[0], v[1]); },
                   {random_input({3, 4}, 7), random_input({2, 4}, 8)}, Expect::LinearInEach);
}

TEST(CurvatureConv2d, StridesPaddingsAndBatches) {
  const auto conv = [](std::int64_t stride, std::int64_t padding) {
    return [=](const std::vector<Variable>& v) {
      return conv2d(v[0], v[1], v.size() > 2 ? v[2] : Variable{}, stride, padding);
    };
  };
  // The weight is shared across positions; each output reads it once, so its terms add exactly.
  EXPECT_CURVATURE(
      conv(1, 0),
      {random_input({1, 1, 5, 5}, 1), random_input({2, 1, 3, 3}, 2), random_input({2}, 3)},
      Expect::LinearInEach);
  EXPECT_CURVATURE(
      conv(2, 1),
      {random_input({2, 3, 7, 6}, 4), random_input({4, 3, 3, 3}, 5), random_input({4}, 6)},
      Expect::LinearInEach);
  EXPECT_CURVATURE(conv(1, 0), {random_input({2, 2, 5, 5}, 7), random_input({3, 2, 2, 2}, 8)},
                   Expect::LinearInEach);
  EXPECT_CURVATURE(
      conv(1, 1),
      {random_input({1, 3, 4, 5}, 9), random_input({2, 3, 3, 2}, 10), random_input({2}, 11)},
      Expect::LinearInEach);
}

TEST(CurvatureConv2d, WithAConnectionTable) {
  // Output 0 reads input 1, output 1 inputs 0 and 2, output 2 all three. A weight off the table is
  // read as zero: its curvature, like its gradient, is zero.
  const ConnectionTable table(3, 3, {false, true, false, true, false, true, true, true, true});
  EXPECT_CURVATURE(
      [&](const std::vector<Variable>& v) { return conv2d(v[0], v[1], v[2], table, 1, 1); },
      {random_input({2, 3, 5, 4}, 12), random_input({3, 3, 3, 3}, 13), random_input({3}, 14)},
      Expect::LinearInEach);
}

TEST(CurvatureConv2d, UnderTanhWithFusionOnRecordsAConv2dNode) {
  ASSERT_TRUE(fusion_enabled());
  const auto layer = [](const std::vector<Variable>& v) {
    return ag::tanh(conv2d(v[0], v[1], v[2], /*stride=*/2, /*padding=*/1));
  };
  const std::vector<Variable> inputs{random_input({2, 2, 6, 5}, 1), random_input({3, 2, 3, 3}, 2),
                                     random_input({3}, 3)};
  {
    CurvatureGuard curvature;
    const Variable y = layer(inputs);
    std::vector<std::string> ops;
    for (const Variable& v : reverse_topological_order(y))
      if (v.node()) ops.emplace_back(v.node()->op);
    EXPECT_EQ(ops, (std::vector<std::string>{"tanh", "conv2d"}));
  }
  // Each output element reads each x and w element through one connection: Gauss-Newton holds
  // for every input.
  EXPECT_CURVATURE(layer, inputs, Expect::GaussNewton);
  // relu over a deferred conv2d, not pooled, is computed unfused with both rules.
  EXPECT_CURVATURE(
      [](const auto& v) { return relu(conv2d(v[0], v[1], v[2], 1, 1)); },
      {random_input({1, 2, 4, 4}, 4), random_input({2, 2, 3, 3}, 5), random_input({2}, 6)},
      Expect::GaussNewton);
}

TEST(CurvatureLoss, NllLossIsLinear) {
  const std::vector<std::int64_t> targets{2, 0, 2, 1};
  EXPECT_CURVATURE([&](const auto& v) { return nll_loss(v[0], targets); },
                   {random_input({4, 3}, 1)}, Expect::LinearInEach);
}

TEST(CurvatureDistance, SquaredDistancesIsExact) {
  EXPECT_CURVATURE([](const auto& v) { return squared_distances(v[0], v[1]); },
                   {random_input({3, 4}, 1), random_input({5, 4}, 2)}, Expect::Exact);
  EXPECT_CURVATURE([](const auto& v) { return squared_distances(v[0], v[1]); },
                   {random_input({1, 6}, 3), random_input({2, 6}, 4)}, Expect::Exact);
  // Without the second-derivative term 2 g the rule would be Gauss-Newton, which the exact check
  // tells apart.
  EXPECT_FALSE(check_curvature([](const auto& v) { return squared_distances(v[0], v[1]); },
                               {random_input({3, 4}, 1), random_input({5, 4}, 2)},
                               Expect::GaussNewton)
                   .ok);
}

TEST(CurvatureLoss, RbfOutputUnderNllLossGivesTwoOverNEverywhere) {
  // The 1998 net's output: y[n, j] = sum_i (x[n, i] - c[j, i])^2, criterion mean_n y[n, D_n]
  // (nll_loss of -y). d2E/dx[n, i]^2 = 2 / N for every component; d2E/dc[j, i]^2 = 2 count_j / N.
  const std::int64_t N = 3;
  const std::vector<std::int64_t> targets{3, 0, 3};
  const Variable x = random_input({N, 1, 84}, 1);
  const Variable c = random_input({1, 10, 84}, 2);
  {
    CurvatureGuard curvature;
    const Variable y = ag::sum(ag::pow(x - c, 2.0), {2});  // [N, 10]
    backward_with_curvature(nll_loss(-y, targets));
  }
  // The one op the network uses for it gives the same.
  const Variable x2(x.value(), true), c2(c.value(), true);
  {
    CurvatureGuard curvature;
    backward_with_curvature(nll_loss(-squared_distances(reshape(x2, {N, 84}), reshape(c2, {10, 84})), targets));
  }
  for (std::int64_t k = 0; k < x.curvature().numel(); ++k)
    ASSERT_NEAR(x2.curvature().at(k), 2.0 / N, 1e-12) << "x element " << k;
  for (std::int64_t k = 0; k < c.curvature().numel(); ++k)
    ASSERT_NEAR(c2.curvature().at(k), c.curvature().at(k), 1e-12) << "c element " << k;
  ASSERT_TRUE(x.curvature().defined());
  ASSERT_EQ(x.curvature().shape(), x.shape());
  for (std::int64_t k = 0; k < x.curvature().numel(); ++k)
    ASSERT_NEAR(x.curvature().at(k), 2.0 / N, 1e-12) << "x element " << k;
  for (std::int64_t j = 0; j < 10; ++j) {
    const auto count = static_cast<double>(std::count(targets.begin(), targets.end(), j));
    for (std::int64_t i = 0; i < 84; ++i)
      ASSERT_NEAR(c.curvature().at(j * 84 + i), 2.0 * count / N, 1e-12)
          << "c[" << j << ", " << i << "]";
  }
}

// ---- The linear layer against differences of the gradient; Gauss-Newton in two layers ----

TEST(CurvatureNetwork, LinearLayerWithSquaredErrorMatchesTheHessianDiagonalOfTheGradient) {
  // For a linear layer with squared error the Gauss-Newton diagonal is exact: the pass must equal
  // d(dE/dp_k)/dp_k by central differences of ag::backward's gradient, for x, w and b.
  Generator gen(5);
  const Variable x = random_input({4, 6}, 1), w = random_input({3, 6}, 2), b = random_input({3}, 3);
  const Variable t(Tensor::uniform({4, 3}, -1, 1, gen, DType::Float64));
  const std::vector<Variable> parameters{x, w, b};
  const auto error = [&] { return ag::sum(ag::pow(linear(x, w, b) - t, 2.0)); };
  for (std::size_t p = 0; p < parameters.size(); ++p) {
    const std::vector<double> hessian = hessian_diagonal(error, parameters[p], 1e-5);
    const std::vector<double> pass = pass_curvature_of(error, parameters, p);
    ASSERT_EQ(pass.size(), hessian.size());
    for (std::size_t k = 0; k < pass.size(); ++k)
      EXPECT_NEAR(pass[k], hessian[k], 1e-6 * std::abs(hessian[k]))
          << "input " << p << " element " << k;
  }
}

TEST(CurvatureNetwork, TwoLayersGiveGaussNewtonForTheFirstLayerNotTheExactDiagonal) {
  // z = linear(tanh(linear(x, w1, b1)), w2, b2), E = sum((z - t)^2). Each first-layer weight
  // reaches z through one hidden unit, so the pass's value is the Gauss-Newton diagonal
  // 2 sum_j (dz_j/dw_k)^2 (checked by differences of the forward) ...
  Generator input_gen(1);
  const Variable constant_x = random_variable({3, 4}, input_gen, /*requires_grad=*/false, -2, 2);
  const Variable w1 = random_input({5, 4}, 2), b1 = random_input({5}, 3);
  const Variable w2 = random_input({2, 5}, 4, -2, 2), b2 = random_input({2}, 5);
  const auto network = [constant_x](const std::vector<Variable>& v) {
    return linear(ag::tanh(linear(constant_x, v[0], v[1])), v[2], v[3]);
  };
  EXPECT_CURVATURE(network, (std::vector<Variable>{w1, b1, w2, b2}), Expect::GaussNewton);

  // ... but not the exact diagonal, which adds 2 sum_j (z_j - t_j) d2z_j/dw_k^2 through tanh''.
  Generator gen(6);
  const Variable t(Tensor::uniform({3, 2}, -1, 1, gen, DType::Float64));
  const std::vector<Variable> parameters{w1, b1, w2, b2};
  const auto error = [&] { return ag::sum(ag::pow(network(parameters) - t, 2.0)); };
  const std::vector<double> hessian = hessian_diagonal(error, w1, 1e-5);
  const std::vector<double> pass = pass_curvature_of(error, parameters, 0);
  double largest_difference = 0;
  for (std::size_t k = 0; k < pass.size(); ++k)
    largest_difference =
        std::max(largest_difference, std::abs(pass[k] - hessian[k]) / std::abs(hessian[k]));
  EXPECT_GT(largest_difference, 0.1);
  // The second layer is linear in w2 and b2: there the pass is the exact diagonal.
  const std::vector<double> hessian_w2 = hessian_diagonal(error, w2, 1e-5);
  const std::vector<double> pass_w2 = pass_curvature_of(error, parameters, 2);
  for (std::size_t k = 0; k < pass_w2.size(); ++k)
    EXPECT_NEAR(pass_w2[k], hessian_w2[k], 1e-6 * std::abs(hessian_w2[k])) << "w2 element " << k;
}

// ---- The pass's gradient and its errors ----

TEST(CurvaturePass, FillsTheSameGradientAsBackward) {
  const Variable x = random_input({2, 1, 6, 6}, 1), w = random_input({3, 1, 3, 3}, 2),
                 b = random_input({3}, 3), w2 = random_input({4, 27}, 4), b2 = random_input({4}, 5);
  Generator gen(6);
  const Variable t(Tensor::uniform({2}, -1, 1, gen, DType::Float64));
  const std::vector<Variable> leaves{x, w, b, w2, b2};
  const auto error = [&] {
    const Variable h = avg_pool2d(ag::tanh(conv2d(x, w, b, 1, 1)), 2);          // [2, 3, 3, 3]
    const Variable z = sigmoid(linear(flatten(h), w2, b2));                     // [2, 4]
    return ag::mean(ag::pow(logsumexp(z, 1) - t, 2.0)) + ag::sum(ag::exp(-z));  // []
  };
  error().backward();
  std::vector<Tensor> grads;
  for (const Variable& leaf : leaves) grads.push_back(leaf.grad().clone());
  pass_curvature_of(error, leaves, 0);  // clears the gradients first
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    ASSERT_TRUE(leaves[i].grad().defined()) << "leaf " << i;
    ASSERT_TRUE(leaves[i].curvature().defined()) << "leaf " << i;
    for (std::int64_t k = 0; k < grads[i].numel(); ++k)
      EXPECT_DOUBLE_EQ(leaves[i].grad().at(k), grads[i].at(k)) << "leaf " << i << " element " << k;
  }
}

TEST(CurvaturePass, AnOpWithoutARuleThrowsNamingIt) {
  Generator generator(1);
  const Variable w = random_input({3, 2, 2, 2}, 9), b = random_input({3}, 10);
  const std::vector<std::pair<std::string, std::function<Variable(const Variable&)>>> ops{
      {"div", [](const Variable& x) { return x / 2.0; }},
      {"log", [](const Variable& x) { return ag::log(ag::exp(x)); }},
      {"softmax", [](const Variable& x) { return softmax(x, 1); }},
      {"log_softmax", [](const Variable& x) { return log_softmax(x, 1); }},
      {"cross_entropy",
       [](const Variable& x) {
         return cross_entropy(reshape(x, {2, -1}), std::vector<std::int64_t>{0, 1});
       }},
      {"max_pool2d",
       [](const Variable& x) {
         NoFusionGuard no_fusion;
         return max_pool2d(x, 2);
       }},
      {"transpose", [](const Variable& x) { return transpose(x, 0, 1); }},
      {"matmul",
       [](const Variable& x) {
         return matmul(reshape(x, {10, 10}), reshape(x, {10, 10}));
       }},
      {"dropout", [&](const Variable& x) { return dropout(x, 0.5, /*training=*/true, generator); }},
      {"conv2d+relu+max_pool2d",
       [&](const Variable& x) { return max_pool2d(relu(conv2d(x, w, b)), 2); }},
      {"conv2d+max_pool2d", [&](const Variable& x) { return max_pool2d(conv2d(x, w, b), 2); }},
  };
  for (const auto& [name, op] : ops) {
    const Variable x = random_input({2, 2, 5, 5}, 1);
    CurvatureGuard curvature;
    const Variable error = ag::sum(ag::pow(op(x), 2.0));
    EXPECT_EQ(thrown_message([&] { backward_with_curvature(error); }),
              "curvature: no curvature rule for op " + name +
                  " (or the graph was not recorded under a CurvatureGuard)");
    // Nothing was run: the graph is intact for an ordinary backward.
    error.backward();
    EXPECT_TRUE(x.has_grad()) << name;
  }
}

TEST(CurvaturePass, AGraphRecordedWithoutACurvatureGuardThrowsSayingSo) {
  const Variable x = random_input({3}, 1);
  const Variable error = ag::sum(ag::pow(ag::exp(x), 2.0));
  EXPECT_THAT(thrown_message([&] { backward_with_curvature(error); }), HasSubstr("CurvatureGuard"));
  // Also when the pass itself runs under a guard: the recording is what counts.
  const Variable again = ag::sum(ag::pow(ag::exp(x), 2.0));
  CurvatureGuard curvature;
  EXPECT_THAT(thrown_message([&] { backward_with_curvature(again); }), HasSubstr("CurvatureGuard"));
}

// A conv2d deferred (for fusion) inside a guard records its rule even when its value is first
// computed outside it.
TEST(CurvaturePass, ADeferredConvolutionKeepsTheModeItWasCalledIn) {
  Generator gen(7);
  const Variable x = random_input({1, 2, 6, 6}, 1);
  const Variable w(Tensor::uniform({3, 2, 3, 3}, -0.5, 0.5, gen, DType::Float64), true);
  Variable pending;
  {
    CurvatureGuard curvature;
    pending = conv2d(x, w);
  }
  (void)pending.value();  // computed here, with no guard alive
  CurvatureGuard curvature;
  backward_with_curvature(ag::sum(ag::pow(ag::tanh(pending), 2.0)));
  EXPECT_TRUE(w.curvature().defined());
}

TEST(CurvaturePass, ANonScalarOutputThrows) {
  const Variable x = random_input({3}, 1);
  CurvatureGuard curvature;
  const Variable y = ag::exp(x);
  EXPECT_THAT(thrown_message([&] { backward_with_curvature(y); }), HasSubstr("not a scalar"));
  EXPECT_THAT(
      thrown_message([&] { backward_with_curvature(Variable(Tensor::ones({}, DType::Float64))); }),
      HasSubstr("does not require grad"));
}
