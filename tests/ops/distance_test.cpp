// squared_distances: hand-computed values, the same values as the broadcast difference squared and
// summed, gradchecks of both inputs, errors.
#include "ops/distance.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "autograd/gradcheck.hpp"
#include "ops/arithmetic.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

TEST(SquaredDistances, MatchesHandComputed) {
  // Rows (1, 2) and (0, -1) against prototypes (1, 1), (-1, 0), (2, 2).
  const Variable y = squared_distances(variable({2, 2}, {1, 2, 0, -1}), variable({3, 2}, {1, 1, -1, 0, 2, 2}));
  expect_values(y.value(), {2, 3}, {1, 8, 1, 5, 2, 13});
}

TEST(SquaredDistances, EqualsTheBroadcastDifferenceSquaredAndSummedBitForBit) {
  Generator gen(3);
  for (const DType dtype : {DType::Float32, DType::Float64}) {
    const Variable x(Tensor::uniform({5, 84}, -1.7, 1.7, gen, dtype));
    const Variable c(Tensor::uniform({10, 84}, -1, 1, gen, dtype));
    const std::vector<double> one = squared_distances(x, c).value().to_vector();
    const Variable difference = reshape(x, {5, 1, 84}) - reshape(c, {1, 10, 84});
    EXPECT_EQ(one, ag::sum(ag::pow(difference, 2), {2}).value().to_vector()) << dtype_name(dtype);
  }
}

TEST(SquaredDistances, GradientsMatchNumeric) {
  Generator gen(4);
  for (const auto& [n, m, d] : std::vector<std::tuple<int, int, int>>{{1, 1, 1}, {3, 4, 5}, {2, 10, 7}}) {
    const GradcheckResult result = gradcheck(
        [](const std::vector<Variable>& v) { return squared_distances(v[0], v[1]); },
        {random_variable({n, d}, gen), random_variable({m, d}, gen)});
    EXPECT_TRUE(result.ok) << n << "x" << m << "x" << d << ": " << result.message;
  }
}

TEST(SquaredDistances, ErrorsNameTheOpAndTheShapes) {
  EXPECT_EQ(thrown_message([] { squared_distances(variable({2, 3}, {1, 2, 3, 4, 5, 6}), variable({2, 2}, {1, 2, 3, 4})); }),
            "squared_distances: need x [N, D] and c [M, D], got x [2, 3], c [2, 2]");
  EXPECT_EQ(thrown_message([] { squared_distances(variable({1, 2}, {1, 2}), Variable(Tensor::ones({1, 2}))); }),
            "squared_distances: x is float64 but c is float32");
  EXPECT_EQ(thrown_message([] { squared_distances(Variable{}, Variable{}); }),
            "squared_distances: undefined input");
}
