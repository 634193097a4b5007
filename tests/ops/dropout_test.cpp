// dropout: the mask drawn in element order from the generator, identity in evaluation and at p = 0,
// p = 1, the kept fraction, validation, and float64 gradchecks with a fixed mask.
#include "ops/dropout.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "autograd/gradcheck.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

TEST(Dropout, KeepsWhereTheDrawIsAtLeastPAndScalesByOneOverOneMinusP) {
  const std::vector<double> values{1.5, -2.0, 3.0, 0.25, -1.0, 4.0, 2.0, -0.5};
  Variable x = variable({2, 4}, values);
  Generator generator(11);
  Variable y = dropout(x, 0.5, /*training=*/true, generator);

  // The same draws by hand: one uniform per element, in row-major order.
  Generator replay(11);
  std::vector<double> expected;
  for (double v : values) expected.push_back(replay.uniform() >= 0.5 ? v * 2 : 0);
  EXPECT_EQ(y.shape(), (Shape{2, 4}));
  expect_values(y, expected);
  EXPECT_EQ(generator.state(), replay.state());  // exactly one draw per element
}

TEST(Dropout, SameSeedGivesTheSameMaskAndAnotherSeedAnother) {
  Variable x(Tensor::ones({64}, DType::Float64));
  Generator a(3), b(3), c(4);
  const std::vector<double> first = dropout(x, 0.5, true, a).value().to_vector();
  EXPECT_EQ(dropout(x, 0.5, true, b).value().to_vector(), first);
  EXPECT_NE(dropout(x, 0.5, true, c).value().to_vector(), first);
  // The generator moves on: the next call draws another mask.
  EXPECT_NE(dropout(x, 0.5, true, a).value().to_vector(), first);
}

TEST(Dropout, EvaluationModeReturnsTheInputItselfAndDrawsNothing) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Generator generator(5);
  const std::string before = generator.state();
  Variable y = dropout(x, 0.5, /*training=*/false, generator);
  EXPECT_EQ(y.id(), x.id());
  EXPECT_EQ(generator.state(), before);
}

TEST(Dropout, PZeroReturnsTheInputItselfAndDrawsNothing) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Generator generator(5);
  const std::string before = generator.state();
  EXPECT_EQ(dropout(x, 0.0, /*training=*/true, generator).id(), x.id());
  EXPECT_EQ(generator.state(), before);
}

TEST(Dropout, POneGivesZerosAndZeroGradientWithoutDrawing) {
  Variable x = variable({2, 3}, {1, -2, 3, -4, 5, -6});
  Generator generator(5);
  const std::string before = generator.state();
  Variable y = dropout(x, 1.0, /*training=*/true, generator);
  expect_values(y.value(), {2, 3}, {0, 0, 0, 0, 0, 0});
  EXPECT_EQ(generator.state(), before);
  y.backward(Tensor::ones({2, 3}, DType::Float64));
  expect_values(x.grad(), {2, 3}, {0, 0, 0, 0, 0, 0});
}

TEST(Dropout, KeptFractionIsAboutOneMinusP) {
  // 200,000 draws: the kept fraction's standard deviation is about 0.001 for these p.
  Variable x(Tensor::ones({200, 1000}, DType::Float64));
  Generator generator(21);
  for (double p : {0.1, 0.3, 0.5, 0.8}) {
    const Tensor y = dropout(x, p, true, generator).value();
    std::int64_t kept = 0;
    for (double v : y.to_vector()) {
      if (v == 0) continue;
      ++kept;
      EXPECT_EQ(v, 1 / (1 - p));
    }
    const double fraction = static_cast<double>(kept) / static_cast<double>(y.numel());
    EXPECT_NEAR(fraction, 1 - p, 0.006) << "p " << p;
  }
}

TEST(Dropout, GradientIsTheOutputGradientTimesTheMask) {
  Variable x = variable({3, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  Generator generator(8);
  Variable y = dropout(x, 0.25, true, generator);
  ASSERT_NE(y.node(), nullptr);
  EXPECT_EQ(y.node()->op, "dropout");
  std::vector<double> dy(12);
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = 0.5 * static_cast<double>(i) - 2;
  y.backward(Tensor::from({3, 4}, dy, DType::Float64));
  // mask = y / x here, since x has no zeros.
  std::vector<double> expected;
  for (std::int64_t i = 0; i < 12; ++i)
    expected.push_back(dy[static_cast<std::size_t>(i)] * (y.value().at(i) / x.value().at(i)));
  expect_values(x.grad(), {3, 4}, expected);
}

TEST(Dropout, SavesTheMaskNotTheInputSoTheInputMayBeModified) {
  Variable x = variable({2, 2}, {1, 2, 3, 4});
  Generator generator(2);
  Variable y = dropout(x, 0.5, true, generator);
  const std::vector<double> mask{y.value().at(0) / 1, y.value().at(1) / 2, y.value().at(2) / 3,
                                 y.value().at(3) / 4};
  x.mutable_value().fill(-7.0);
  y.backward(Tensor::ones({2, 2}, DType::Float64));
  expect_values(x.grad(), {2, 2}, mask);
}

TEST(Dropout, WorksInFloat32) {
  Variable x(Tensor::from({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}), true);
  Generator generator(9), replay(9);
  Variable y = dropout(x, 0.2, true, generator);
  EXPECT_EQ(y.dtype(), DType::Float32);
  for (std::int64_t i = 0; i < 6; ++i) {
    const bool kept = replay.uniform() >= 0.2;
    EXPECT_FLOAT_EQ(static_cast<float>(y.value().at(i)),
                    kept ? static_cast<float>(i + 1) * static_cast<float>(1 / 0.8) : 0.0f)
        << i;
  }
  y.backward(Tensor::ones({2, 3}));
  EXPECT_EQ(x.grad().dtype(), DType::Float32);
}

TEST(Dropout, POutsideZeroOneThrowsNamingOpPAndShape) {
  Variable x = variable({2, 3}, {1, 2, 3, 4, 5, 6});
  Generator generator(1);
  EXPECT_EQ(thrown_message([&] { dropout(x, 1.5, true, generator); }),
            "dropout: p must be in [0, 1], got 1.5 for x of shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { dropout(x, -0.1, true, generator); }),
            "dropout: p must be in [0, 1], got -0.1 for x of shape [2, 3]");
  expect_starts_with(thrown_message([&] {
                       dropout(x, std::numeric_limits<double>::quiet_NaN(), true, generator);
                     }),
                     "dropout: p must be in [0, 1], got ");
  // Checked in evaluation mode too, as PyTorch does.
  EXPECT_EQ(thrown_message([&] { dropout(x, 2.0, false, generator); }),
            "dropout: p must be in [0, 1], got 2 for x of shape [2, 3]");
}

TEST(Dropout, GradMatchesNumericWithAFixedMask) {
  // A fresh generator with the same seed in every call: each forward draws the same mask.
  Generator gen(30);
  for (const Shape& shape : std::vector<Shape>{{1, 5}, {3, 4}, {2, 3, 5}, {7}})
    for (double p : {0.3, 0.7}) {
      std::vector<Variable> inputs{random_variable(shape, gen)};
      auto result = gradcheck(
          [p](const std::vector<Variable>& v) {
            Generator fixed(17);
            return dropout(v[0], p, /*training=*/true, fixed);
          },
          inputs);
      EXPECT_TRUE(result.ok) << shape_str(shape) << " p " << p << ": " << result.message;
      EXPECT_GT(result.checked, 0);
    }
}
