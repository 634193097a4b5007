// reshape and flatten: views sharing storage (and its version counter), shape rules, gradients
// reshaped back.
#include "ops/shape.hpp"

#include <gtest/gtest.h>

#include "autograd/gradcheck.hpp"
#include "ops/activation.hpp"
#include "ops/arithmetic.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

Variable iota(Shape shape, bool requires_grad = true) {
  Tensor t(std::move(shape), DType::Float64);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, static_cast<double>(i));
  return Variable(t, requires_grad);
}

}  // namespace

TEST(Reshape, SharesStorageAndKeepsRowMajorOrder) {
  Variable x = iota({2, 3});
  Variable y = reshape(x, {3, 2});
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  EXPECT_TRUE(y.value().same_storage(x.value()));
  EXPECT_EQ(y.value().to_vector(), (std::vector<double>{0, 1, 2, 3, 4, 5}));
}

TEST(Reshape, InfersMinusOne) {
  EXPECT_EQ(reshape(iota({2, 3, 4}), {-1, 4}).shape(), (Shape{6, 4}));
}

TEST(Reshape, WrongElementCountThrowsNamingBothShapes) {
  Variable x = iota({2, 3});
  EXPECT_EQ(thrown_message([&] { reshape(x, {4, 2}); }),
            "reshape: cannot reshape [2, 3] to [4, 2]");
}

TEST(Reshape, GradientIsReshapedBack) {
  Variable x = iota({2, 3});
  Variable w(Tensor::from({3, 2}, {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, DType::Float64));
  sum(mul(reshape(x, {3, 2}), w)).backward();
  EXPECT_EQ(x.grad().shape(), (Shape{2, 3}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

TEST(Reshape, GradMatchesNumeric) {
  Generator gen(20);
  std::vector<Variable> inputs{
      Variable(Tensor::uniform({2, 3, 4}, -1, 1, gen, DType::Float64), true)};
  auto result = gradcheck([](const auto& v) { return reshape(v[0], {4, -1}); }, inputs);
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(Flatten, CollapsesFromStartDim) {
  EXPECT_EQ(flatten(iota({2, 3, 4, 5})).shape(), (Shape{2, 60}));
  EXPECT_EQ(flatten(iota({2, 3, 4, 5}), 2).shape(), (Shape{2, 3, 20}));
  EXPECT_EQ(flatten(iota({2, 3, 4, 5}), 0).shape(), (Shape{120}));
  EXPECT_EQ(flatten(iota({2, 3, 4, 5}), -1).shape(), (Shape{2, 3, 4, 5}));
  EXPECT_EQ(flatten(iota({2, 16, 5, 5})).shape(), (Shape{2, 400}));
}

TEST(Flatten, SharesStorage) {
  Variable x = iota({2, 3, 2});
  EXPECT_TRUE(flatten(x).value().same_storage(x.value()));
}

TEST(Flatten, StartDimOutOfRangeThrows) {
  Variable x = iota({2, 3});
  EXPECT_EQ(thrown_message([&] { flatten(x, 2); }),
            "flatten: start_dim 2 out of range for shape [2, 3]");
  EXPECT_THROW(flatten(x, -3), std::invalid_argument);
}

TEST(Flatten, GradMatchesNumeric) {
  Generator gen(21);
  std::vector<Variable> inputs{
      Variable(Tensor::uniform({2, 3, 2, 2}, -1, 1, gen, DType::Float64), true)};
  auto result = gradcheck([](const auto& v) { return flatten(v[0]); }, inputs);
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(Reshape, WriteThroughTheViewIsCaughtByAnOpThatSavedTheOriginal) {
  // relu saves x; the reshaped Variable shares x's storage, so writing into it changes x.
  Variable x = variable({2, 2}, {1, -2, 3, -4});
  x.set_name("x");
  Variable loss = sum(relu(x));
  Variable flat = reshape(x, {4});
  flat.mutable_value().fill(5.0);
  EXPECT_EQ(x.value().at(1), 5.0);
  expect_starts_with(thrown_message([&] { loss.backward(); }),
                     "relu: input 0 ('x'), saved for backward at version 0, was modified in place "
                     "since (now version 2)");
}

TEST(Reshape, SavesNothingSoItsInputMayBeModified) {
  Variable x = iota({2, 3});
  Variable loss = sum(reshape(x, {3, 2}));
  x.mutable_value().fill(-1.0);
  loss.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 1, 1, 1, 1, 1}));
}
