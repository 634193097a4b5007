// matmul and linear: hand-computed products, shape/dtype validation, gradients only where needed,
// gradchecks with and without bias, saved inputs modified in place.
#include "ops/linear.hpp"

#include <gtest/gtest.h>

#include "autograd/gradcheck.hpp"
#include "ops/arithmetic.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

TEST(Matmul, MultipliesHandValues) {
  // [[1, 2, 3], [4, 5, 6]] [[1, 0], [0, 1], [2, -1]] = [[7, -1], [16, -1]]
  Variable y = matmul(variable({2, 3}, {1, 2, 3, 4, 5, 6}), variable({3, 2}, {1, 0, 0, 1, 2, -1}));
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{7, -1, 16, -1}));
}

TEST(Matmul, WorksInFloat32) {
  Variable a(Tensor::from({1, 2}, std::vector<float>{1.0f, 2.0f}));
  Variable b(Tensor::from({2, 1}, std::vector<float>{3.0f, 4.0f}));
  Variable y = matmul(a, b);
  EXPECT_EQ(y.dtype(), DType::Float32);
  EXPECT_EQ(y.value().data<float>()[0], 11.0f);
}

TEST(Matmul, EmptyInnerDimensionGivesZeros) {
  Variable y = matmul(Variable(Tensor::zeros({2, 0}, DType::Float64)),
                      Variable(Tensor::zeros({0, 3}, DType::Float64)));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(y.value().to_vector(), std::vector<double>(6, 0.0));
}

TEST(Matmul, MismatchedShapesThrowNamingBoth) {
  Variable a = variable({2, 3}, std::vector<double>(6)), b = variable({2, 2}, std::vector<double>(4));
  EXPECT_EQ(thrown_message([&] { matmul(a, b); }),
            "matmul: cannot multiply [2, 3] by [2, 2] (need [M, K] and [K, N])");
  Variable v = variable({3}, std::vector<double>(3));
  EXPECT_THROW(matmul(a, v), std::invalid_argument);
}

TEST(Matmul, DtypeMismatchThrows) {
  Variable a(Tensor::zeros({2, 3}, DType::Float32)), b(Tensor::zeros({3, 2}, DType::Float64));
  EXPECT_EQ(thrown_message([&] { matmul(a, b); }),
            "matmul: dtype mismatch: [2, 3] float32 with [3, 2] float64");
}

TEST(Matmul, GradMatchesNumericForSeveralShapes) {
  Generator gen(50);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1, 1}, {1, 1}}, {{1, 4}, {4, 3}}, {{3, 5}, {5, 2}}, {{4, 1}, {1, 3}}, {{2, 7}, {7, 1}}};
  for (const auto& [shape_a, shape_b] : cases) {
    std::vector<Variable> inputs{random_variable(shape_a, gen), random_variable(shape_b, gen)};
    auto result = gradcheck([](const auto& v) { return matmul(v[0], v[1]); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape_a) << " x " << shape_str(shape_b) << ": "
                           << result.message;
  }
}

TEST(Matmul, ComputesOnlyTheGradientsThatAreNeeded) {
  Variable a = variable({2, 2}, {1, 2, 3, 4});
  Variable b = variable({2, 2}, {5, 6, 7, 8}, /*requires_grad=*/false);
  Variable y = matmul(a, b);
  EXPECT_TRUE(a.value().is_unique());  // only b is saved, for da = dy b^T
  sum(y).backward();
  EXPECT_FALSE(b.has_grad());
  // da = ones [2, 2] b^T: row sums of b on every row.
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{11, 15, 11, 15}));
}

TEST(Linear, ComputesXWTransposePlusBias) {
  // x [2, 3], w [2, 3] (out = 2), b [2]
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable w = variable({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  Variable b = variable({2}, {10, 20});
  Variable y = linear(x, w, b);
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  // row 0: [1 - 3, 0.5 * 6] + b = [8, 23]; row 1: [4 - 6, 0.5 * 15] + b = [8, 27.5]
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{8, 23, 8, 27.5}));
  EXPECT_EQ(linear(x, w).value().to_vector(), (std::vector<double>{-2, 3, -2, 7.5}));
}

TEST(Linear, GradientsMatchTheirFormulas) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable w = variable({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  Variable b = variable({2}, {10, 20});
  sum(linear(x, w, b)).backward();
  // dy = ones [2, 2]: dx = dy w (column sums of w on every row), dw = dy^T x (column sums of x
  // on every row), db = N.
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1.5, 0.5, -0.5, 1.5, 0.5, -0.5}));
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{5, 7, 9, 5, 7, 9}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{2, 2}));
}

TEST(Linear, WrongShapesThrowNamingAllShapes) {
  Variable x = variable({2, 3}, std::vector<double>(6));
  Variable w = variable({4, 2}, std::vector<double>(8));
  Variable w_ok = variable({4, 3}, std::vector<double>(12));
  Variable b = variable({3}, std::vector<double>(3));
  EXPECT_EQ(thrown_message([&] { linear(x, w); }),
            "linear: need x [N, in] and w [out, in], got x [2, 3], w [4, 2]");
  EXPECT_EQ(thrown_message([&] { linear(x, w_ok, b); }),
            "linear: need b [out] matching w [out, in], got x [2, 3], w [4, 3], b [3]");
}

TEST(Linear, DtypeMismatchThrows) {
  Variable x(Tensor::zeros({2, 3}, DType::Float64)), w(Tensor::zeros({4, 3}, DType::Float64));
  Variable b(Tensor::zeros({4}, DType::Float32));
  EXPECT_EQ(thrown_message([&] { linear(x, w, b); }),
            "linear: dtype mismatch: [4, 3] float64 with [4] float32");
}

TEST(Linear, Float32MatchesFloat64) {
  Generator gen(51);
  Tensor x = Tensor::uniform({3, 5}, -1, 1, gen, DType::Float64);
  Tensor w = Tensor::uniform({4, 5}, -1, 1, gen, DType::Float64);
  Tensor b = Tensor::uniform({4}, -1, 1, gen, DType::Float64);
  Tensor y64 = linear(Variable(x), Variable(w), Variable(b)).value();
  Tensor y32 = linear(Variable(x.to(DType::Float32)), Variable(w.to(DType::Float32)),
                      Variable(b.to(DType::Float32)))
                   .value();
  ASSERT_EQ(y32.dtype(), DType::Float32);
  for (std::int64_t i = 0; i < y64.numel(); ++i) EXPECT_NEAR(y32.at(i), y64.at(i), 1e-5) << i;
}

TEST(Linear, GradMatchesNumericWithAndWithoutBias) {
  Generator gen(52);
  // {N, in, out}
  const std::vector<std::array<std::int64_t, 3>> cases = {
      {1, 1, 1}, {1, 4, 3}, {5, 3, 2}, {3, 7, 5}, {2, 1, 6}};
  for (const auto& [N, in, out] : cases) {
    std::vector<Variable> inputs{random_variable({N, in}, gen), random_variable({out, in}, gen),
                                 random_variable({out}, gen)};
    auto with_bias =
        gradcheck([](const auto& v) { return linear(v[0], v[1], v[2]); }, inputs);
    EXPECT_TRUE(with_bias.ok) << N << "x" << in << " -> " << out << ": " << with_bias.message;
    auto without_bias = gradcheck([](const auto& v) { return linear(v[0], v[1]); },
                                  {inputs[0], inputs[1]});
    EXPECT_TRUE(without_bias.ok) << N << "x" << in << " -> " << out << " (no bias): "
                                 << without_bias.message;
  }
}

TEST(Linear, InputWithoutGradGetsNoneAndIsSavedOnlyForTheWeightGradient) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6}, /*requires_grad=*/false);
  Variable w = variable({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  Variable y = linear(x, w);
  EXPECT_FALSE(x.value().is_unique());  // saved for dw = dy^T x
  EXPECT_TRUE(w.value().is_unique());   // nobody needs dx = dy w
  sum(y).backward();
  EXPECT_FALSE(x.has_grad());
  EXPECT_TRUE(w.has_grad());
}

TEST(Linear, RecordsNothingUnderNoGrad) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable w = variable({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  NoGradGuard no_grad;
  Variable y = linear(x, w);
  EXPECT_TRUE(y.is_leaf());
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(x.value().is_unique());
  EXPECT_TRUE(w.value().is_unique());
}

// ---- Saved inputs modified in place between forward and backward ----

TEST(Linear, OptimiserStepBeforeBackwardThrowsNamingTheWeight) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Variable w(Tensor::from({2, 3}, {1.0, 0.0, -1.0, 0.5, 0.5, 0.5}, DType::Float64), true,
             "fc1.weight");
  Variable b(Tensor::zeros({2}, DType::Float64), true, "fc1.bias");
  Variable loss = sum(linear(x, w, b));
  // What an SGD step does (models/nn/optim.cpp): write the parameter through mutable_value().
  double* weights = w.mutable_value().data<double>();
  for (std::int64_t i = 0; i < w.value().numel(); ++i) weights[i] -= 0.1;
  EXPECT_EQ(thrown_message([&] { loss.backward(); }),
            "linear: input 1 ('fc1.weight'), saved for backward at version 0, was modified in "
            "place since (now version 1); run backward before modifying it, or give the op a "
            "clone of it");
}

TEST(Linear, ModifiedInputThrowsWhenTheWeightGradientReadsIt) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6}, /*requires_grad=*/false);
  Variable w = variable({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  Variable loss = sum(linear(x, w));
  x.mutable_value().set(0, 7.0);
  expect_starts_with(thrown_message([&] { loss.backward(); }),
                     "linear: input 0, saved for backward at version 0, was modified in place");
}

TEST(Linear, WeightThatWasNotSavedMayBeModified) {
  // x needs no gradient, so w is not saved: dw = dy^T x does not read it.
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6}, /*requires_grad=*/false);
  Variable w = variable({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  Variable loss = sum(linear(x, w));
  w.mutable_value().fill(0.0);
  loss.backward();
  expect_values(w.grad(), {2, 3}, {5, 7, 9, 5, 7, 9});
}

TEST(Matmul, SavedInputModifiedInPlaceBeforeBackwardThrows) {
  Variable a = variable({2, 2}, {1, 2, 3, 4}), b = variable({2, 2}, {5, 6, 7, 8});
  Variable loss = sum(matmul(a, b));
  a.mutable_value().fill(0.0);
  expect_starts_with(thrown_message([&] { loss.backward(); }),
                     "matmul: input 0, saved for backward at version 0, was modified in place "
                     "since (now version 2)");
}
