// gradcheck itself: it passes correct ops and catches wrong backwards (wrong factor, a forgotten
// term, a gradient for a zero output gradient), saying where; it refuses float32; it samples.
#include "autograd/gradcheck.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ops/arithmetic.hpp"

using namespace ag;
using ::testing::HasSubstr;

namespace {

Variable var(Shape shape, std::vector<double> values, bool requires_grad = true) {
  return Variable(Tensor::from(std::move(shape), values, DType::Float64), requires_grad);
}

// y = a * b + a, element-wise, same shapes, with a backward that can be made wrong on purpose.
enum class Bug { None, DoubleGradOfB, ForgetTermOfA, NonzeroForZeroGrad, WrongAtElement5 };

Variable product_plus_a(const Variable& a, const Variable& b, Bug bug) {
  Tensor y(a.shape(), DType::Float64);
  for (std::int64_t i = 0; i < y.numel(); ++i)
    y.set(i, a.value().at(i) * b.value().at(i) + a.value().at(i));
  Tensor av = a.value(), bv = b.value();
  return record(std::move(y), "product_plus_a", {a, b},
                [av, bv, bug](const Tensor& dy, const GradMask&) {
                  Tensor da(dy.shape(), DType::Float64), db(dy.shape(), DType::Float64);
                  bool all_zero = true;
                  for (std::int64_t i = 0; i < dy.numel(); ++i) all_zero &= dy.at(i) == 0;
                  for (std::int64_t i = 0; i < dy.numel(); ++i) {
                    const double g = dy.at(i);
                    da.set(i, g * bv.at(i) + (bug == Bug::ForgetTermOfA ? 0 : g));
                    db.set(i, (bug == Bug::DoubleGradOfB ? 2 : 1) * g * av.at(i));
                    if (bug == Bug::WrongAtElement5 && i == 5) db.set(i, 3 * g * av.at(i));
                  }
                  if (bug == Bug::NonzeroForZeroGrad && all_zero) da.set(0, 0.5);
                  return TensorList{da, db};
                });
}

GradcheckFunction with_bug(Bug bug) {
  return [bug](const std::vector<Variable>& v) { return product_plus_a(v[0], v[1], bug); };
}

std::vector<Variable> two_inputs() {
  // a[0] = 0 makes d y[0] / d b[0] zero, so doubling it goes unnoticed there: the first wrong
  // element of b's gradient is element 1.
  return {var({3}, {0.0, 0.75, -1.25}), var({3}, {0.5, -2.0, 1.5})};
}

}  // namespace

TEST(Gradcheck, PassesACorrectRecordedOp) {
  auto result = gradcheck(with_bug(Bug::None), two_inputs());
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_EQ(result.checked, 2 * 3 * 3);  // two inputs of 3 elements, 3 outputs
}

TEST(Gradcheck, PassesARealOp) {
  auto result = gradcheck([](const auto& v) { return mul(v[0], add(v[0], v[1])); },
                          {var({2, 2}, {0.1, -0.2, 0.3, 0.4}), var({2}, {1.5, -0.5})});
  EXPECT_TRUE(result.ok) << result.message;
}

TEST(Gradcheck, CatchesADoubledGradientNamingInputElementAndValues) {
  auto result = gradcheck(with_bug(Bug::DoubleGradOfB), two_inputs());
  ASSERT_FALSE(result.ok);
  // d y[1] / d b[1] = a[1] = 0.75, reported as 1.5.
  EXPECT_THAT(result.message, HasSubstr("input 1 of shape [3], element 1, output element 1"));
  EXPECT_THAT(result.message, HasSubstr("analytic 1.5 vs numeric 0.75"));
}

TEST(Gradcheck, CatchesAForgottenTerm) {
  auto result = gradcheck(with_bug(Bug::ForgetTermOfA), two_inputs());
  ASSERT_FALSE(result.ok);
  // d y[0] / d a[0] = b[0] + 1 = 1.5, reported as b[0] = 0.5.
  EXPECT_THAT(result.message, HasSubstr("input 0 of shape [3], element 0, output element 0"));
  EXPECT_THAT(result.message, HasSubstr("analytic 0.5 vs numeric 1.5"));
}

TEST(Gradcheck, CatchesAGradientFromAZeroOutputGradient) {
  auto result = gradcheck(with_bug(Bug::NonzeroForZeroGrad), two_inputs());
  ASSERT_FALSE(result.ok);
  EXPECT_THAT(result.message, HasSubstr("zero output gradient gave a nonzero gradient 0.5"));
  EXPECT_THAT(result.message, HasSubstr("input 0, element 0"));
}

TEST(Gradcheck, NamesTheInputWhenItHasAName) {
  std::vector<Variable> inputs = two_inputs();
  inputs[1].set_name("fc.weight");
  auto result = gradcheck(with_bug(Bug::DoubleGradOfB), inputs);
  ASSERT_FALSE(result.ok);
  EXPECT_THAT(result.message, HasSubstr("input 1 (fc.weight)"));
}

TEST(Gradcheck, RefusesFloat32Inputs) {
  Variable x(Tensor::from({2}, std::vector<float>{1.0f, 2.0f}), true);
  try {
    gradcheck([](const auto& v) { return sum(v[0]); }, {x});
    FAIL() << "float32 input accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("gradcheck: input 0 is float32"));
  }
}

TEST(Gradcheck, MaxElementsPerInputLimitsWhatIsChecked) {
  Variable a = var({10}, std::vector<double>(10, 0.5));
  Variable b = var({10}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  auto sum_of = [](Bug bug) {
    return [bug](const std::vector<Variable>& v) { return sum(product_plus_a(v[0], v[1], bug)); };
  };
  // All elements: 2 inputs x 10 elements x 1 output.
  EXPECT_EQ(gradcheck(sum_of(Bug::None), {a, b}).checked, 20);
  GradcheckOptions every_other{.max_elements_per_input = 5};  // elements 0, 2, 4, 6, 8
  EXPECT_EQ(gradcheck(sum_of(Bug::None), {a, b}, every_other).checked, 10);
  // A bug at element 5 only is found by the full check and missed by the sample: the price of
  // sampling, which is why the sample is evenly spread and the full check runs on small shapes.
  EXPECT_FALSE(gradcheck(sum_of(Bug::WrongAtElement5), {a, b}).ok);
  EXPECT_TRUE(gradcheck(sum_of(Bug::WrongAtElement5), {a, b}, every_other).ok);
}

TEST(Gradcheck, LeavesInputValuesAndGradientsAsFound) {
  std::vector<Variable> inputs = two_inputs();
  inputs[0].mutable_grad() = Tensor::full({3}, 7.0, DType::Float64);
  const std::vector<double> a_before = inputs[0].value().to_vector();
  const std::vector<double> b_before = inputs[1].value().to_vector();
  ASSERT_TRUE(gradcheck(with_bug(Bug::None), inputs).ok);
  EXPECT_EQ(inputs[0].value().to_vector(), a_before);
  EXPECT_EQ(inputs[1].value().to_vector(), b_before);
  EXPECT_EQ(inputs[0].grad().to_vector(), std::vector<double>(3, 7.0));
  EXPECT_FALSE(inputs[1].has_grad());
}

TEST(Gradcheck, SkipsInputsThatDoNotRequireGrad) {
  std::vector<Variable> inputs = two_inputs();
  inputs[1].set_requires_grad(false);
  // The bug is in b's gradient, which nobody asks for.
  auto result = gradcheck(with_bug(Bug::DoubleGradOfB), inputs);
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_EQ(result.checked, 3 * 3);
}
