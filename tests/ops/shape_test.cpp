// reshape and flatten: views sharing storage (and its version counter), shape rules, gradients
// reshaped back. cat, transpose and pad2d: hand-computed copies, validation, gradchecks.
#include "ops/shape.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

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

// Row-major strides of a contiguous tensor of `shape`.
std::vector<std::int64_t> strides_of(const Shape& shape) {
  std::vector<std::int64_t> strides(shape.size(), 1);
  for (std::size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

// Expects y == x with dimensions d0 and d1 swapped, element by element, by index arithmetic.
void expect_transposed(const Tensor& x, const Tensor& y, std::size_t d0, std::size_t d1) {
  Shape expected_shape = x.shape();
  std::swap(expected_shape[d0], expected_shape[d1]);
  ASSERT_EQ(y.shape(), expected_shape);
  const std::vector<std::int64_t> x_strides = strides_of(x.shape()),
                                  y_strides = strides_of(y.shape());
  for (std::int64_t flat = 0; flat < y.numel(); ++flat) {
    std::vector<std::int64_t> index(y.shape().size());
    for (std::size_t d = 0; d < index.size(); ++d) index[d] = flat / y_strides[d] % y.shape()[d];
    std::swap(index[d0], index[d1]);  // now an index into x
    std::int64_t x_flat = 0;
    for (std::size_t d = 0; d < index.size(); ++d) x_flat += index[d] * x_strides[d];
    EXPECT_EQ(y.at(flat), x.at(x_flat)) << "element " << flat;
  }
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

// ---- cat ----

TEST(Cat, JoinsThreeInputsAlongTheFirstDim) {
  Variable a = variable({1, 2}, {1, 2}), b = variable({2, 2}, {3, 4, 5, 6}),
           c = variable({1, 2}, {7, 8});
  expect_values(cat({a, b, c}, 0).value(), {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
}

TEST(Cat, JoinsThreeInputsAlongAMiddleDim) {
  // [2, 1, 2], [2, 2, 2], [2, 1, 2] along dim 1 -> [2, 4, 2]: per outer index, a's row, b's two
  // rows, c's row.
  Variable a = variable({2, 1, 2}, {0, 1, 100, 101}),
           b = variable({2, 2, 2}, {2, 3, 4, 5, 102, 103, 104, 105}),
           c = variable({2, 1, 2}, {6, 7, 106, 107});
  expect_values(cat({a, b, c}, 1).value(), {2, 4, 2},
                {0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102, 103, 104, 105, 106, 107});
  expect_values(cat({a, b, c}, -2).value(), {2, 4, 2},
                {0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102, 103, 104, 105, 106, 107});
}

TEST(Cat, JoinsAlongTheLastDim) {
  Variable a = variable({2, 1}, {1, 2}), b = variable({2, 2}, {10, 11, 20, 21});
  expect_values(cat({a, b}, -1).value(), {2, 3}, {1, 10, 11, 2, 20, 21});
}

TEST(Cat, GradientOfEachInputIsItsSliceOfTheOutputGradient) {
  Variable a = variable({2, 1}, {1, 2}), b = variable({2, 2}, {10, 11, 20, 21});
  cat({a, b}, 1).backward(Tensor::from({2, 3}, {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, DType::Float64));
  expect_values(a.grad(), {2, 1}, {1, 4});
  expect_values(b.grad(), {2, 2}, {2, 3, 5, 6});
}

TEST(Cat, OnlyInputsThatRequireGradGetOne) {
  Variable a = variable({1, 2}, {1, 2}), frozen = variable({1, 2}, {3, 4}, false);
  cat({frozen, a}, 0).backward(Tensor::from({2, 2}, {1.0, 2.0, 3.0, 4.0}, DType::Float64));
  expect_values(a.grad(), {1, 2}, {3, 4});
  EXPECT_FALSE(frozen.has_grad());
}

TEST(Cat, TheSameInputTwiceAccumulatesBothSlices) {
  Variable a = variable({2}, {1, 2});
  cat({a, a}, 0).backward(Tensor::from({4}, {1.0, 2.0, 10.0, 20.0}, DType::Float64));
  expect_values(a.grad(), {2}, {11, 22});
}

TEST(Cat, OneInputIsACopy) {
  Variable a = iota({2, 3});
  Variable y = cat({a}, 1);
  EXPECT_FALSE(y.value().same_storage(a.value()));
  expect_values(y.value(), {2, 3}, {0, 1, 2, 3, 4, 5});
}

TEST(Cat, WorksInFloat32) {
  Variable a(Tensor::from({1, 2}, std::vector<float>{1.5f, 2.5f}), true),
      b(Tensor::from({1, 1}, std::vector<float>{-3.0f}), true);
  Variable y = cat({a, b}, 1);
  EXPECT_EQ(y.dtype(), DType::Float32);
  expect_values(y.value(), {1, 3}, {1.5, 2.5, -3});
  y.backward(Tensor::from({1, 3}, std::vector<float>{1, 2, 3}));
  expect_values(b.grad(), {1, 1}, {3});
}

TEST(Cat, GradMatchesNumericAlongEachDim) {
  Generator gen(22);
  struct Case {
    std::vector<Shape> shapes;
    std::int64_t dim;
  };
  const std::vector<Case> cases{
      {{{2, 3, 4}, {1, 3, 4}, {3, 3, 4}}, 0},
      {{{1, 3}, {1, 3}, {1, 3}}, 0},
      {{{2, 1, 4}, {2, 3, 4}, {2, 2, 4}}, 1},
      {{{1, 2, 5}, {1, 1, 5}, {1, 3, 5}}, -2},
      {{{3, 2, 1}, {3, 2, 3}, {3, 2, 2}}, -1},
      {{{2, 2, 3, 1}, {2, 1, 3, 1}, {2, 3, 3, 1}}, 1},
  };
  for (const Case& c : cases) {
    std::vector<Variable> inputs;
    for (const Shape& shape : c.shapes) inputs.push_back(random_variable(shape, gen));
    auto result = gradcheck(
        [&c](const std::vector<Variable>& v) { return cat({v[0], v[1], v[2]}, c.dim); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(c.shapes[0]) << " dim " << c.dim << ": " << result.message;
    EXPECT_GT(result.checked, 0);
  }
}

TEST(CatErrors, ShapesThatDifferOutsideDimNameOpAndShapes) {
  Variable a = iota({2, 3}), b = iota({2, 4}), c = iota({2});
  EXPECT_EQ(thrown_message([&] { cat({a, b}, 0); }),
            "cat: input 1 of shape [2, 4] does not match input 0 of shape [2, 3] outside dim 0");
  EXPECT_EQ(thrown_message([&] { cat({a, a, c}, -1); }),
            "cat: input 2 of shape [2] does not match input 0 of shape [2, 3] outside dim 1");
}

TEST(CatErrors, DtypeMismatchNamesOpAndShapes) {
  Variable a = iota({2, 3});
  Variable b(Tensor::zeros({2, 3}, DType::Float32));
  EXPECT_EQ(thrown_message([&] { cat({a, b}, 0); }),
            "cat: input 1 [2, 3] is float32 but input 0 [2, 3] is float64");
}

TEST(CatErrors, NoInputsZeroDimInputsOrDimOutOfRange) {
  EXPECT_EQ(thrown_message([&] { cat({}, 0); }), "cat: expected at least one input");
  Variable scalar(Tensor::full({}, 1.0, DType::Float64));
  EXPECT_EQ(thrown_message([&] { cat({scalar, scalar}, 0); }),
            "cat: cannot join 0-d tensors (input 0 has shape [])");
  Variable a = iota({2, 3});
  EXPECT_EQ(thrown_message([&] { cat({a, a}, 2); }), "cat: dim 2 out of range for shape [2, 3]");
  EXPECT_EQ(thrown_message([&] { cat({a, a}, -3); }), "cat: dim -3 out of range for shape [2, 3]");
}

// ---- transpose ----

TEST(Transpose, SwapsTheTwoDimsOfAMatrix) {
  Variable x = iota({2, 3});
  Variable y = transpose(x, 0, 1);
  expect_values(y.value(), {3, 2}, {0, 3, 1, 4, 2, 5});
  EXPECT_FALSE(y.value().same_storage(x.value()));
  expect_values(transpose(x, -1, -2).value(), {3, 2}, {0, 3, 1, 4, 2, 5});
}

TEST(Transpose, SwapsAnyTwoDimsOf3dAnd4dTensors) {
  for (const Shape& shape : std::vector<Shape>{{2, 3, 4}, {2, 3, 4, 5}, {1, 4, 1, 3}}) {
    Variable x = iota(shape);
    const auto rank = static_cast<std::int64_t>(shape.size());
    for (std::int64_t d0 = 0; d0 < rank; ++d0)
      for (std::int64_t d1 = 0; d1 < rank; ++d1) {
        SCOPED_TRACE(shape_str(shape) + " dims " + std::to_string(d0) + ", " + std::to_string(d1));
        expect_transposed(x.value(), transpose(x, d0, d1).value(), static_cast<std::size_t>(d0),
                          static_cast<std::size_t>(d1));
        // The same pair counted from the end.
        expect_transposed(x.value(), transpose(x, d0 - rank, d1).value(),
                          static_cast<std::size_t>(d0), static_cast<std::size_t>(d1));
      }
  }
}

TEST(Transpose, ThreeDimHandValues) {
  // x:[2, 2, 3] = 0..11, dims 0 and 2 -> y:[3, 2, 2], y[k, j, i] = x[i, j, k] = 6i + 3j + k.
  expect_values(transpose(iota({2, 2, 3}), 0, 2).value(), {3, 2, 2},
                {0, 6, 3, 9, 1, 7, 4, 10, 2, 8, 5, 11});
}

TEST(Transpose, GradientIsTheOutputGradientTransposedBack) {
  Variable x = iota({2, 3});
  transpose(x, 1, 0).backward(
      Tensor::from({3, 2}, {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, DType::Float64));
  expect_values(x.grad(), {2, 3}, {1, 3, 5, 2, 4, 6});
}

TEST(Transpose, ZeroDimTensorAndEqualDimsGiveACopy) {
  Variable scalar(Tensor::full({}, 2.5, DType::Float64), true);
  Variable y = transpose(scalar, 0, -1);
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_EQ(y.value().item(), 2.5);
  y.backward();
  EXPECT_EQ(scalar.grad().item(), 1.0);
  Variable x = iota({2, 3});
  expect_values(transpose(x, 1, -1).value(), {2, 3}, {0, 1, 2, 3, 4, 5});
}

TEST(Transpose, WorksInFloat32) {
  Variable x(Tensor::from({2, 2}, std::vector<float>{1, 2, 3, 4}), true);
  Variable y = transpose(x, 0, 1);
  EXPECT_EQ(y.dtype(), DType::Float32);
  expect_values(y.value(), {2, 2}, {1, 3, 2, 4});
  y.backward(Tensor::from({2, 2}, std::vector<float>{1, 2, 3, 4}));
  expect_values(x.grad(), {2, 2}, {1, 3, 2, 4});
}

TEST(Transpose, DimOutOfRangeThrowsNamingOpAndShape) {
  Variable x = iota({2, 3, 4});
  EXPECT_EQ(thrown_message([&] { transpose(x, 0, 3); }),
            "transpose: dim1 3 out of range for shape [2, 3, 4]");
  EXPECT_EQ(thrown_message([&] { transpose(x, -4, 1); }),
            "transpose: dim0 -4 out of range for shape [2, 3, 4]");
  Variable scalar(Tensor::full({}, 1.0, DType::Float64));
  EXPECT_EQ(thrown_message([&] { transpose(scalar, 0, 1); }),
            "transpose: dim1 1 out of range for shape []");
}

TEST(Transpose, GradMatchesNumericOn3dAnd4dTensors) {
  Generator gen(23);
  const std::vector<std::pair<Shape, std::pair<std::int64_t, std::int64_t>>> cases{
      {{2, 3, 4}, {0, 2}}, {{2, 3, 4}, {1, -1}}, {{1, 3, 2}, {0, 1}},
      {{2, 3, 2, 3}, {1, 3}}, {{2, 1, 3, 2}, {0, -1}}, {{3, 2, 2, 1}, {2, 1}}};
  for (const auto& c : cases) {
    const Shape& shape = c.first;
    const std::int64_t d0 = c.second.first, d1 = c.second.second;
    std::vector<Variable> inputs{random_variable(shape, gen)};
    auto result = gradcheck(
        [d0, d1](const std::vector<Variable>& v) { return transpose(v[0], d0, d1); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << " dims " << d0 << ", " << d1 << ": "
                           << result.message;
    EXPECT_GT(result.checked, 0);
  }
}

// ---- pad2d ----

TEST(Pad2d, SurroundsEachPlaneWithTheValue) {
  // x:[1, 2, 2, 1], two planes [0; 1] and [2; 3], padding 1 with -0.5 -> [1, 2, 4, 3].
  Variable x = iota({1, 2, 2, 1});
  Variable y = pad2d(x, 1, -0.5);
  const double p = -0.5;
  expect_values(y.value(), {1, 2, 4, 3},
                {p, p, p,  p, 0, p,  p, 1, p,  p, p, p,
                 p, p, p,  p, 2, p,  p, 3, p,  p, p, p});
}

TEST(Pad2d, PaddingTwoWithTheDefaultZero) {
  Variable y = pad2d(iota({1, 1, 1, 2}), 2);
  expect_values(y.value(), {1, 1, 5, 6},
                {0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0,  0, 0, 0, 1, 0, 0,
                 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0});
}

TEST(Pad2d, PaddingZeroIsACopy) {
  Variable x = iota({2, 1, 2, 3});
  Variable y = pad2d(x, 0, 7.0);
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_EQ(y.value().to_vector(), x.value().to_vector());
  EXPECT_FALSE(y.value().same_storage(x.value()));
}

TEST(Pad2d, GradientIsTheMiddleOfTheOutputGradient) {
  Variable x = iota({1, 1, 2, 2});
  Variable y = pad2d(x, 1, 3.0);  // [1, 1, 4, 4]
  Tensor dy(Shape{1, 1, 4, 4}, DType::Float64);
  for (std::int64_t i = 0; i < dy.numel(); ++i) dy.set(i, static_cast<double>(10 * i));
  y.backward(dy);
  // The middle 2 x 2 of a 4 x 4 grid: flat indices 5, 6, 9, 10.
  expect_values(x.grad(), {1, 1, 2, 2}, {50, 60, 90, 100});
}

TEST(Pad2d, WorksInFloat32) {
  Variable x(Tensor::from({1, 1, 1, 1}, std::vector<float>{2}), true);
  Variable y = pad2d(x, 1, 0.25);
  EXPECT_EQ(y.dtype(), DType::Float32);
  expect_values(y.value(), {1, 1, 3, 3}, {0.25, 0.25, 0.25, 0.25, 2, 0.25, 0.25, 0.25, 0.25});
  sum(y).backward();
  expect_values(x.grad(), {1, 1, 1, 1}, {1});
}

TEST(Pad2d, GradMatchesNumeric) {
  Generator gen(24);
  const std::vector<std::pair<Shape, std::int64_t>> cases{
      {{1, 1, 3, 3}, 1}, {{2, 3, 3, 4}, 2}, {{2, 1, 1, 5}, 3}, {{1, 2, 2, 2}, 0}};
  for (const auto& [shape, padding] : cases) {
    std::vector<Variable> inputs{random_variable(shape, gen)};
    auto result = gradcheck(
        [padding](const std::vector<Variable>& v) { return pad2d(v[0], padding, -0.1); }, inputs);
    EXPECT_TRUE(result.ok) << shape_str(shape) << " padding " << padding << ": " << result.message;
    EXPECT_GT(result.checked, 0);
  }
}

TEST(Pad2d, RejectsANon4dInputAndANegativePadding) {
  EXPECT_EQ(thrown_message([] { pad2d(iota({2, 3}), 1); }),
            "pad2d: expected x of shape [N, C, H, W], got [2, 3]");
  EXPECT_EQ(thrown_message([] { pad2d(iota({1, 1, 2, 2}), -1); }),
            "pad2d: padding must be >= 0, got -1");
  EXPECT_EQ(thrown_message([] { pad2d(Variable{}, 1); }), "pad2d: undefined input");
}
