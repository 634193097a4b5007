// add, sub, mul, div (with broadcasting), neg, exp, log, pow and the operators: hand-computed
// forwards, gradients reduced to the input shapes, gradchecks, and inputs modified in place after
// the forward.
#include "ops/arithmetic.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

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

// ---- Broadcasting fast paths: same shape and one-element operands ----

TEST(Mul, OneElementOperandOfAnyRankBroadcastsLikeAScalar) {
  // [1, 1, 1] with [3] is [1, 1, 3]: a single loop reads the one element at index 0.
  Variable y = mul(variable({1, 1, 1}, {2}), variable({3}, {1, 2, 3}));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3}));
  expect_values(y, {2, 4, 6});
  Variable z = mul(variable({3}, {1, 2, 3}), variable({1, 1, 1}, {2}));
  EXPECT_EQ(z.shape(), (Shape{1, 1, 3}));
  expect_values(z, {2, 4, 6});
}

TEST(Mul, OperandWithExtraOnesIsReadInOutputOrder) {
  // [3] with [1, 3]: same number of elements, read in order; a's gradient keeps a's shape.
  Variable a = variable({3}, {1, 2, 3});
  Variable b = variable({1, 3}, {4, 5, 6});
  Variable y = mul(a, b);
  EXPECT_EQ(y.shape(), (Shape{1, 3}));
  expect_values(y, {4, 10, 18});
  sum(y).backward();
  expect_values(a.grad(), Shape{3}, {4, 5, 6});
  expect_values(b.grad(), Shape{1, 3}, {1, 2, 3});
}

TEST(Mul, FastPathsAgreeWithTheGeneralBroadcast) {
  // x * s through the plain loop for a one-element operand, and x * [s, s, s, s] through the
  // odometer (a row over a matrix): the same values and gradients.
  Generator gen(4);
  Variable x = random_variable({3, 4}, gen), s = random_variable({}, gen);
  Variable s_row = variable({1, 4}, std::vector<double>(4, s.value().item()));
  Variable w = random_variable({3, 4}, gen, false);
  Variable fast = mul(x, s), general = mul(x, s_row);
  expect_values(fast, general.value().to_vector());
  sum(mul(fast, w)).backward();
  const Tensor fast_grad_x = x.grad().clone();
  x.zero_grad();
  sum(mul(general, w)).backward();
  expect_values(fast_grad_x, x.grad().to_vector());
  double row_total = 0;
  for (double g : s_row.grad().to_vector()) row_total += g;
  EXPECT_NEAR(s.grad().item(), row_total, 1e-14);
}

TEST(Mul, GradientOfOneElementOperandIsSummedInDouble) {
  // 10^6 products of 0.1f: summed in float the total drifts by about 1000; in double it rounds to
  // the nearest float of 100000.
  const std::int64_t n = 1'000'000;
  Variable x(Tensor::full({n}, 1.0, DType::Float32));
  Variable scale(Tensor::full({}, 1.0, DType::Float32), true);
  mul(x, scale).backward(Tensor::full({n}, 0.1, DType::Float32));
  EXPECT_EQ(scale.grad().shape(), Shape{});
  EXPECT_NEAR(scale.grad().item(), 100000.0, 0.01);
}

// ---- sub ----

TEST(Sub, BroadcastSubtractsHandValues) {
  Variable y = sub(variable({2, 2}, {1, 2, 3, 4}), variable({2}, {10, -1}));
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  expect_values(y, {-9, 3, -7, 5});
}

TEST(Sub, GradientOfTheSubtrahendIsMinusDyReduced) {
  Variable a = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable b = variable({3}, {0, 0, 0});
  Variable w = variable({2, 3}, {1, 2, 3, 4, 5, 6}, false);
  sum(mul(w, sub(a, b))).backward();
  expect_values(a.grad(), Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  expect_values(b.grad(), Shape{3}, {-5, -7, -9});
}

TEST(Sub, WorksInFloat32) {
  Variable y = sub(Variable(Tensor::from({2}, std::vector<float>{1.5f, 2.5f})),
                   Variable(Tensor::from({}, std::vector<float>{0.5f})));
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{1, 2}));
}

TEST(Sub, IncompatibleShapesThrowNamingOpAndShapes) {
  Variable a = variable({2, 3}, std::vector<double>(6)), b = variable({2}, {1, 2});
  EXPECT_EQ(thrown_message([&] { sub(a, b); }),
            "sub: cannot broadcast [2, 3] with [2]");
}

TEST(Sub, GradMatchesNumericForSeveralShapes) {
  Generator gen(5);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1}, {1}},     {{3, 5}, {3, 5}}, {{4, 3}, {3}},           {{3}, {4, 3}},
      {{2, 1}, {1, 3}}, {{}, {2, 3}},   {{2, 3}, {}},            {{2, 3, 2, 3}, {3, 1, 1}},
      {{3, 1, 5}, {1, 4, 1}}};
  for (const auto& [shape_a, shape_b] : cases) {
    std::vector<Variable> inputs{random_variable(shape_a, gen), random_variable(shape_b, gen)};
    auto result = gradcheck([](const auto& v) { return sub(v[0], v[1]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape_a) << " - " << shape_str(shape_b) << ": "
                           << result.message;
  }
}

// ---- div ----

namespace {

// Values in [-2, -0.5] or [0.5, 2]: divisors and logarithms far from the pole at 0.
Variable away_from_zero(Shape shape, Generator& gen) {
  Tensor t = Tensor::uniform(std::move(shape), 0.5, 2.0, gen, DType::Float64);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (gen.below(2)) t.set(i, -t.at(i));
  return Variable(t, true);
}

}  // namespace

TEST(Div, BroadcastDividesHandValues) {
  Variable y = div(variable({2, 2}, {1, 2, 3, 4}), variable({2}, {2, -4}));
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  expect_values(y, {0.5, -0.5, 1.5, -1});
}

TEST(Div, GradientsAreHandComputed) {
  // y = a / b: da = 1 / b, db = -a / b^2, db summed over the rows.
  Variable a = variable({2, 2}, {1, 2, 3, 4});
  Variable b = variable({2}, {2, -4});
  sum(div(a, b)).backward();
  expect_values(a.grad(), Shape{2, 2}, {0.5, -0.25, 0.5, -0.25});
  expect_values(b.grad(), Shape{2}, {-(1.0 + 3.0) / 4, -(2.0 + 4.0) / 16});
}

TEST(Div, WorksInFloat32) {
  Variable y = div(Variable(Tensor::from({2}, std::vector<float>{1.0f, 3.0f})),
                   Variable(Tensor::from({2}, std::vector<float>{4.0f, 2.0f})));
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{0.25, 1.5}));
}

TEST(Div, IncompatibleShapesThrowNamingOpAndShapes) {
  EXPECT_EQ(thrown_message([] { div(variable({3}, {1, 2, 3}), variable({2, 2}, {1, 2, 3, 4})); }),
            "div: cannot broadcast [3] with [2, 2]");
}

TEST(Div, DtypeMismatchThrowsNamingShapesAndDtypes) {
  Variable a(Tensor::ones({2}, DType::Float32));
  Variable b(Tensor::ones({1}, DType::Float64));
  EXPECT_EQ(thrown_message([&] { div(a, b); }),
            "div: dtype mismatch: [2] float32 with [1] float64");
}

TEST(Div, GradMatchesNumericForSeveralShapes) {
  Generator gen(6);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1}, {1}},     {{3, 5}, {3, 5}}, {{4, 3}, {3}},           {{3}, {4, 3}},
      {{2, 1}, {1, 3}}, {{}, {2, 3}},   {{2, 3}, {}},            {{2, 3, 2, 3}, {3, 1, 1}},
      {{3, 1, 5}, {1, 4, 1}}};
  for (const auto& [shape_a, shape_b] : cases) {
    std::vector<Variable> inputs{random_variable(shape_a, gen), away_from_zero(shape_b, gen)};
    auto result = gradcheck([](const auto& v) { return div(v[0], v[1]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape_a) << " / " << shape_str(shape_b) << ": "
                           << result.message;
  }
}

TEST(Div, DivisorModifiedInPlaceBeforeBackwardThrows) {
  Variable a = variable({2}, {1, 2});
  Variable b(Tensor::from({2}, {4.0, 5.0}, DType::Float64), false, "divisor");
  Variable y = sum(div(a, b));
  b.mutable_value().fill(1.0);
  expect_starts_with(thrown_message([&] { y.backward(); }),
                     "div: input 1 ('divisor'), saved for backward at version 0, was modified in "
                     "place since");
}

// ---- neg, exp, log, pow ----

TEST(Neg, FlipsSignsAndItsGradient) {
  Variable x = variable({3}, {1.5, -2, 0});
  Variable y = neg(x);
  expect_values(y, {-1.5, 2, -0.0});
  sum(mul(y, variable({3}, {1, 2, 3}, false))).backward();
  expect_values(x.grad(), Shape{3}, {-1, -2, -3});
}

TEST(Exp, RaisesEToHandValues) {
  Variable y = ag::exp(variable({3}, {0, 1, -2}));
  expect_values(y, {1, std::exp(1.0), std::exp(-2.0)});
}

TEST(Exp, GradientIsTheOutput) {
  Variable x = variable({2}, {0.5, -1});
  sum(ag::exp(x)).backward();
  expect_values(x.grad(), Shape{2}, {std::exp(0.5), std::exp(-1.0)});
}

TEST(Log, TakesNaturalLogarithmOfHandValues) {
  Variable y = ag::log(variable({3}, {1, std::exp(2.0), 0.25}));
  expect_values(y, {0, 2, std::log(0.25)});
}

TEST(Log, GradientIsOneOverX) {
  Variable x = variable({2}, {0.5, -4});
  sum(ag::log(x)).backward();  // log(-4) is nan, but its gradient is still 1 / x
  expect_values(x.grad(), Shape{2}, {2, -0.25});
}

TEST(Pow, RaisesToHandExponents) {
  Variable x = variable({3}, {4, 2, 0.5});
  expect_values(ag::pow(x, 2), {16, 4, 0.25});
  expect_values(ag::pow(x, 0.5), {2, std::sqrt(2.0), std::sqrt(0.5)});
  expect_values(ag::pow(x, -1), {0.25, 0.5, 2});
}

TEST(Pow, GradientIsPTimesXToPMinusOne) {
  Variable x = variable({2}, {3, -2});
  sum(ag::pow(x, 3)).backward();
  expect_values(x.grad(), Shape{2}, {27, 12});
}

TEST(Pow, ZeroExponentHasZeroGradientEvenAtZero) {
  Variable x = variable({2}, {0, 2});
  Variable y = ag::pow(x, 0);
  expect_values(y, {1, 1});
  sum(y).backward();
  expect_values(x.grad(), Shape{2}, {0, 0});
}

TEST(UnaryOps, WorkInFloat32) {
  Variable x(Tensor::from({2}, std::vector<float>{1.0f, 4.0f}));
  for (const Variable& y : {neg(x), ag::exp(x), ag::log(x), ag::pow(x, 1.5)})
    EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(neg(x).value().to_vector(), (std::vector<double>{-1, -4}));
  EXPECT_EQ(ag::exp(x).value().data<float>()[0], std::exp(1.0f));
  EXPECT_EQ(ag::log(x).value().data<float>()[1], std::log(4.0f));
  EXPECT_EQ(ag::pow(x, 1.5).value().to_vector(), (std::vector<double>{1, 8}));
}

TEST(UnaryOps, UndefinedInputThrowsNamingTheOp) {
  EXPECT_EQ(thrown_message([] { neg(Variable{}); }), "neg: undefined input");
  EXPECT_EQ(thrown_message([] { ag::exp(Variable{}); }), "exp: undefined input");
  EXPECT_EQ(thrown_message([] { ag::log(Variable{}); }), "log: undefined input");
  EXPECT_EQ(thrown_message([] { ag::pow(Variable{}, 2); }), "pow: undefined input");
}

TEST(UnaryOps, GradMatchesNumericForSeveralShapes) {
  Generator gen(7);
  const std::vector<Shape> shapes = {{}, {1}, {7}, {1, 5}, {4, 3}, {2, 3, 5}, {2, 1, 3, 3}};
  for (const Shape& shape : shapes) {
    const std::string at = shape_str(shape);
    std::vector<Variable> any{random_variable(shape, gen)};
    std::vector<Variable> nonzero{away_from_zero(shape, gen)};
    std::vector<Variable> positive{random_variable(shape, gen, true, 0.5, 2.0)};
    auto neg_result = gradcheck([](const auto& v) { return neg(v[0]); }, any);
    EXPECT_TRUE(neg_result.ok) << "neg " << at << ": " << neg_result.message;
    auto exp_result = gradcheck([](const auto& v) { return ag::exp(v[0]); }, any);
    EXPECT_TRUE(exp_result.ok) << "exp " << at << ": " << exp_result.message;
    auto log_result = gradcheck([](const auto& v) { return ag::log(v[0]); }, positive);
    EXPECT_TRUE(log_result.ok) << "log " << at << ": " << log_result.message;
    // Integer exponents are defined for any sign; x^-1 and x^-2 away from the pole at 0.
    for (double p : {1.0, 2.0, 3.0}) {
      auto result = gradcheck([p](const auto& v) { return ag::pow(v[0], p); }, any);
      EXPECT_TRUE(result.ok) << "pow " << p << " " << at << ": " << result.message;
    }
    for (double p : {-1.0, -2.0}) {
      auto result = gradcheck([p](const auto& v) { return ag::pow(v[0], p); }, nonzero);
      EXPECT_TRUE(result.ok) << "pow " << p << " " << at << ": " << result.message;
    }
    // Non-integer exponents need x > 0.
    for (double p : {0.5, -1.5, 2.5}) {
      auto result = gradcheck([p](const auto& v) { return ag::pow(v[0], p); }, positive);
      EXPECT_TRUE(result.ok) << "pow " << p << " " << at << ": " << result.message;
    }
  }
}

TEST(Exp, SavesItsOutputSoItsInputMayBeModified) {
  Variable x = variable({2}, {0, 1});
  Variable y = sum(ag::exp(x));
  x.mutable_value().fill(5.0);
  y.backward();
  expect_values(x.grad(), Shape{2}, {1, std::exp(1.0)});
}

TEST(Log, InputModifiedInPlaceBeforeBackwardThrows) {
  Variable x(Tensor::from({2}, {1.0, 2.0}, DType::Float64), true, "x");
  Variable y = sum(ag::log(x));
  x.mutable_value().fill(5.0);
  expect_starts_with(thrown_message([&] { y.backward(); }),
                     "log: input 0 ('x'), saved for backward at version 0, was modified in place");
}

// ---- Operators ----

TEST(Operators, ComputeTheirOpsWithBroadcasting) {
  Variable a = variable({2, 2}, {1, 2, 3, 4}), b = variable({2}, {2, -1});
  expect_values(a + b, {3, 1, 5, 3});
  expect_values(a - b, {-1, 3, 1, 5});
  expect_values(a * b, {2, -2, 6, -4});
  expect_values(a / b, {0.5, -2, 1.5, -4});
  expect_values(-b, {-2, 1});
}

TEST(Operators, DoubleOperandIsAConstantOnEitherSide) {
  Variable x = variable({2}, {1, 4});
  expect_values(x + 1.0, {2, 5});
  expect_values(1.0 + x, {2, 5});
  expect_values(x - 1.0, {0, 3});
  expect_values(1.0 - x, {0, -3});
  expect_values(x * 3.0, {3, 12});
  expect_values(3.0 * x, {3, 12});
  expect_values(x / 2.0, {0.5, 2});
  expect_values(2.0 / x, {2, 0.5});
}

TEST(Operators, GraphShowsTheOpWithAZeroDimConstantInput) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable y = 2.0 * x;
  ASSERT_NE(y.node(), nullptr);
  EXPECT_EQ(y.node()->op, "mul");
  ASSERT_EQ(y.node()->inputs.size(), 2u);
  const Variable& constant = y.node()->inputs[0];
  EXPECT_EQ(constant.shape(), Shape{});
  EXPECT_EQ(constant.dtype(), DType::Float64);
  EXPECT_FALSE(constant.requires_grad());
  EXPECT_EQ(y.node()->inputs[1].id(), x.id());
  EXPECT_EQ((x / 4.0).node()->op, "div");
  EXPECT_EQ((1.0 - x).node()->op, "sub");
  EXPECT_EQ((-x).node()->op, "neg");
}

TEST(Operators, ConstantTakesTheDtypeOfTheOtherOperand) {
  Variable x(Tensor::from({2}, std::vector<float>{1.0f, 2.0f}));
  Variable y = x * (2.0 / 3);
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().data<float>()[1], 2.0f * static_cast<float>(2.0 / 3));
}

TEST(Operators, UndefinedOperandThrowsNamingTheOp) {
  EXPECT_EQ(thrown_message([] { Variable{} * 2.0; }), "mul: undefined input");
  EXPECT_EQ(thrown_message([] { 1.0 - Variable{}; }), "sub: undefined input");
}

TEST(Operators, GradMatchesNumericForAnExpression) {
  // (2x - 1) / y + x * y^2 - 3 / x, with y broadcast over x's rows.
  Generator gen(8);
  std::vector<Variable> inputs{away_from_zero({3, 4}, gen), away_from_zero({4}, gen)};
  auto result = gradcheck(
      [](const auto& v) {
        const Variable &x = v[0], &y = v[1];
        return (2.0 * x - 1.0) / y + x * ag::pow(y, 2) - 3.0 / x + (-x);
      },
      inputs);
  EXPECT_TRUE(result.ok) << result.message;
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
