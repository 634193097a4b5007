// conv2d: hand-computed forwards and backwards, a direct-loop reference over many geometries,
// float64 gradchecks, float32 against float64, the validation messages, and saved inputs modified
// in place (the unfused op; the deferred one is in fused_test.cpp).
#include "ops/conv2d.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "ops/arithmetic.hpp"
#include "ops/activation.hpp"
#include "ops/fusion/fusion.hpp"
#include "ops/pool.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

// The definition, written as plainly as possible (at() and bounds checks per term), to compare
// the im2col + GEMM path against.
Tensor direct_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t stride,
                     std::int64_t padding) {
  const std::int64_t n_batch = x.size(0), cin = x.size(1), h = x.size(2), wd = x.size(3);
  const std::int64_t cout = w.size(0), kh = w.size(2), kw = w.size(3);
  const std::int64_t ho = (h + 2 * padding - kh) / stride + 1;
  const std::int64_t wo = (wd + 2 * padding - kw) / stride + 1;
  Tensor y({n_batch, cout, ho, wo}, DType::Float64);
  for (std::int64_t n = 0; n < n_batch; ++n)
    for (std::int64_t o = 0; o < cout; ++o)
      for (std::int64_t i = 0; i < ho; ++i)
        for (std::int64_t j = 0; j < wo; ++j) {
          double total = b.defined() ? b.at(o) : 0.0;
          for (std::int64_t c = 0; c < cin; ++c)
            for (std::int64_t p = 0; p < kh; ++p)
              for (std::int64_t q = 0; q < kw; ++q) {
                const std::int64_t row = i * stride + p - padding, col = j * stride + q - padding;
                if (row < 0 || row >= h || col < 0 || col >= wd) continue;
                total += w.at(((o * cin + c) * kh + p) * kw + q) *
                         x.at(((n * cin + c) * h + row) * wd + col);
              }
          y.set(((n * cout + o) * ho + i) * wo + j, total);
        }
  return y;
}

void expect_contains(const std::string& message, std::initializer_list<std::string> parts) {
  for (const std::string& part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
}

// x = 1..9 in a 3x3 image, w = [[1, 2], [3, 4]].
const std::vector<double> image_1_to_9{1, 2, 3, 4, 5, 6, 7, 8, 9};
const std::vector<double> kernel_1234{1, 2, 3, 4};

}  // namespace

TEST(Conv2d, ForwardMatchesHandComputedWithoutBias) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9), w = variable({1, 1, 2, 2}, kernel_1234);
  // 1*1 + 2*2 + 4*3 + 5*4 = 37, then one step right (+10) and one step down (+30).
  expect_values(conv2d(x, w).value(), {1, 1, 2, 2}, {37, 47, 67, 77});
}

TEST(Conv2d, ForwardAddsBiasPerOutputChannel) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9);
  // Two output channels: the kernel above and its negation.
  Variable w = variable({2, 1, 2, 2}, {1, 2, 3, 4, -1, -2, -3, -4});
  Variable b = variable({2}, {0.5, -10});
  expect_values(conv2d(x, w, b).value(), {1, 2, 2, 2},
                {37.5, 47.5, 67.5, 77.5, -47, -57, -77, -87});
}

TEST(Conv2d, ForwardWithPaddingAndStride2MatchesHandComputed) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9), w = variable({1, 1, 2, 2}, kernel_1234);
  // Padded to 5x5; windows start at rows/cols -1 and 1:
  //   (-1,-1): x00*w11 = 4            (-1, 1): x01*w10 + x02*w11 = 6 + 12
  //   ( 1,-1): x10*w01 + x20*w11 = 8 + 28   (1, 1): 5*1 + 6*2 + 8*3 + 9*4 = 77
  expect_values(conv2d(x, w, {}, /*stride=*/2, /*padding=*/1).value(), {1, 1, 2, 2},
                {4, 18, 36, 77});
}

TEST(Conv2d, OneByOneKernelMixesChannels) {
  // Two input channels (constant 1 and constant 10), three output channels.
  std::vector<double> image(8, 1.0);
  for (int i = 4; i < 8; ++i) image[i] = 10.0;
  Variable x = variable({1, 2, 2, 2}, image);
  Variable w = variable({3, 2, 1, 1}, {1, 0, 0, 1, 2, -1});
  Variable b = variable({3}, {0, 0, 100});
  expect_values(conv2d(x, w, b).value(), {1, 3, 2, 2},
                {1, 1, 1, 1, 10, 10, 10, 10, 92, 92, 92, 92});
}

TEST(Conv2d, BackwardWithUnitOutputGradientMatchesHandComputed) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9), w = variable({1, 1, 2, 2}, kernel_1234);
  Variable b = variable({1}, {0});
  Variable y = conv2d(x, w, b);
  y.backward(Tensor::ones(y.shape(), DType::Float64));
  // grad_w[p, q] = sum of the 2x2 block of x at offset (p, q); grad_b = number of outputs.
  expect_values(w.grad(), {1, 1, 2, 2}, {12, 16, 24, 28});
  expect_values(b.grad(), {1}, {4});
  // grad_x[h, w] = sum of the kernel taps that cover pixel (h, w).
  expect_values(x.grad(), {1, 1, 3, 3}, {1, 3, 2, 4, 10, 6, 3, 7, 4});
}

TEST(Conv2d, InputThatDoesNotRequireGradGetsNone) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9, /*requires_grad=*/false);
  Variable w = variable({1, 1, 2, 2}, kernel_1234);
  Variable y = conv2d(x, w);
  y.backward(Tensor::ones(y.shape(), DType::Float64));
  EXPECT_FALSE(x.has_grad());
  expect_values(w.grad(), {1, 1, 2, 2}, {12, 16, 24, 28});
}

TEST(Conv2d, RecordsNothingUnderNoGrad) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9), w = variable({1, 1, 2, 2}, kernel_1234);
  NoGradGuard no_grad;
  Variable y = conv2d(x, w);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.is_leaf());
}

TEST(Conv2d, Float32ForwardAgreesWithFloat64) {
  Generator gen(7);
  Variable x = random_variable({2, 3, 9, 8}, gen), w = random_variable({4, 3, 3, 3}, gen);
  Variable b = random_variable({4}, gen);
  const Tensor y64 = conv2d(x, w, b, 2, 1).value();
  const Tensor y32 = conv2d(Variable(x.value().to(DType::Float32)),
                            Variable(w.value().to(DType::Float32)),
                            Variable(b.value().to(DType::Float32)), 2, 1)
                         .value();
  ASSERT_EQ(y32.dtype(), DType::Float32);
  ASSERT_EQ(y32.shape(), y64.shape());
  for (std::int64_t i = 0; i < y64.numel(); ++i)
    EXPECT_NEAR(y32.at(i), y64.at(i), 1e-5) << "element " << i;
}

// ---- Geometries: direct-loop reference and gradcheck ----------------------------------------

struct ConvCase {
  std::string name;
  std::int64_t batch, in_channels, out_channels, height, width, kernel_h, kernel_w;
  std::int64_t stride, padding;
  bool bias;
};

std::ostream& operator<<(std::ostream& out, const ConvCase& c) { return out << c.name; }

class Conv2dGeometry : public ::testing::TestWithParam<ConvCase> {
 protected:
  // Inputs for the case, all requiring grad: x, w and, when the case has one, b.
  std::vector<Variable> make_inputs() const {
    const ConvCase& c = GetParam();
    Generator gen(static_cast<std::uint64_t>(c.height * 100 + c.width * 10 + c.kernel_h));
    std::vector<Variable> inputs{
        random_variable({c.batch, c.in_channels, c.height, c.width}, gen),
        random_variable({c.out_channels, c.in_channels, c.kernel_h, c.kernel_w}, gen)};
    if (c.bias) inputs.push_back(random_variable({c.out_channels}, gen));
    return inputs;
  }
  Variable apply(const std::vector<Variable>& inputs) const {
    const ConvCase& c = GetParam();
    return conv2d(inputs[0], inputs[1], c.bias ? inputs[2] : Variable{}, c.stride, c.padding);
  }
};

TEST_P(Conv2dGeometry, ForwardMatchesDirectLoops) {
  const ConvCase& c = GetParam();
  const std::vector<Variable> inputs = make_inputs();
  const Tensor y = apply(inputs).value();
  const Tensor expected = direct_conv2d(inputs[0].value(), inputs[1].value(),
                                        c.bias ? inputs[2].value() : Tensor{}, c.stride,
                                        c.padding);
  ASSERT_EQ(y.shape(), expected.shape());
  for (std::int64_t i = 0; i < y.numel(); ++i)
    EXPECT_NEAR(y.at(i), expected.at(i), 1e-12) << "element " << i;
}

TEST_P(Conv2dGeometry, GradientsMatchNumeric) {
  auto r = gradcheck([this](const std::vector<Variable>& in) { return apply(in); },
                     make_inputs());
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.checked, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Conv2dGeometry,
    ::testing::Values(
        // name                            N  Cin Cout H  W  KH KW s  p  bias
        ConvCase{"OneChannel3x3Kernel3",     1, 1, 1, 3, 3, 3, 3, 1, 0, false},
        ConvCase{"Batch2Odd5x7Padding1",     2, 2, 3, 5, 7, 3, 3, 1, 1, true},
        ConvCase{"Stride2Odd5x7Padding1",    1, 3, 2, 5, 7, 3, 3, 2, 1, true},
        ConvCase{"Kernel5Padding2LikeLeNet", 2, 1, 2, 6, 5, 5, 5, 1, 2, true},
        ConvCase{"Kernel5Stride2DropsEdge",  1, 2, 3, 8, 9, 5, 5, 2, 0, false},
        ConvCase{"Kernel1Stride2",           2, 3, 2, 4, 5, 1, 1, 2, 0, false},
        ConvCase{"Stride2Padding2Odd7x5",    3, 2, 1, 7, 5, 3, 3, 2, 2, true},
        ConvCase{"NonSquareKernel2x3",       2, 2, 2, 4, 6, 2, 3, 1, 1, true},
        ConvCase{"PaddingWiderThanKernel",   1, 1, 2, 3, 4, 1, 1, 1, 2, true}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return info.param.name; });

// ---- Connection tables ----------------------------------------------------------------------

// Output channel o reads input c where the row says 'X'; 4 outputs, 3 inputs.
ConnectionTable example_table() {
  const char* rows[] = {"X.X", ".X.", "XXX", "..X"};
  std::vector<bool> connected;
  for (const char* row : rows)
    for (int c = 0; c < 3; ++c) connected.push_back(row[c] == 'X');
  return ConnectionTable(4, 3, std::move(connected));
}

TEST(Conv2dConnections, EqualTheConvolutionOfTheWeightsOffTheTableZeroed) {
  const ConnectionTable table = example_table();
  EXPECT_FALSE(table.all());
  EXPECT_EQ(table.pairs(4, 3), 7);
  EXPECT_EQ(ConnectionTable{}.pairs(4, 3), 12);
  Generator gen(5);
  const auto uniform = [&](Shape shape) { return Tensor::uniform(std::move(shape), -1, 1, gen, DType::Float64); };
  const Tensor x = uniform({2, 3, 6, 5}), w = uniform({4, 3, 3, 3}), b = uniform({4});
  const Tensor dy = uniform({2, 4, 6, 5});
  Tensor zeroed = w.clone();
  table.zero_unconnected(zeroed);
  for (const bool fusion : {true, false}) {
    SCOPED_TRACE(fusion ? "fusion on" : "fusion off");
    std::optional<NoFusionGuard> unfused;
    if (!fusion) unfused.emplace();
    const Variable xt(x, true), wt(w, true), bt(b, true);
    const Variable y = conv2d(xt, wt, bt, table, 1, 1);
    y.backward(dy);
    const Variable xd(x, true), wd(zeroed, true), bd(b, true);
    const Variable expected = conv2d(xd, wd, bd, 1, 1);
    expected.backward(dy);
    Tensor expected_dw = wd.grad().clone();
    table.zero_unconnected(expected_dw);
    for (std::int64_t i = 0; i < y.value().numel(); ++i)
      ASSERT_DOUBLE_EQ(y.value().at(i), expected.value().at(i)) << "y " << i;
    for (std::int64_t i = 0; i < x.numel(); ++i)
      ASSERT_DOUBLE_EQ(xt.grad().at(i), xd.grad().at(i)) << "dx " << i;
    for (std::int64_t i = 0; i < w.numel(); ++i)
      ASSERT_DOUBLE_EQ(wt.grad().at(i), expected_dw.at(i)) << "dw " << i;
    for (std::int64_t i = 0; i < b.numel(); ++i)
      ASSERT_DOUBLE_EQ(bt.grad().at(i), bd.grad().at(i)) << "db " << i;
  }
}

TEST(Conv2dConnections, UnderMaxPoolingTheyRunUnfusedWithTheSameValues) {
  // conv2d_max_pool2d's kernels take every pair: the chain pools the ordinary conv2d's result.
  const ConnectionTable table = example_table();
  Generator gen(8);
  const Variable x = random_variable({2, 3, 6, 6}, gen), w = random_variable({4, 3, 3, 3}, gen);
  const Variable b = random_variable({4}, gen);
  const Variable fused = max_pool2d(relu(conv2d(x, w, b, table, 1, 1)), 2);
  EXPECT_EQ(fused.node()->op, "max_pool2d");
  NoFusionGuard unfused;
  const Variable expected = max_pool2d(relu(conv2d(x, w, b, table, 1, 1)), 2);
  for (std::int64_t i = 0; i < expected.value().numel(); ++i)
    ASSERT_DOUBLE_EQ(fused.value().at(i), expected.value().at(i)) << i;
}

TEST(Conv2dConnections, GradientsMatchNumeric) {
  // The numeric gradient of a weight off the table is 0 too: the convolution does not read it.
  const ConnectionTable table = example_table();
  Generator gen(6);
  const auto r = gradcheck(
      [&](const std::vector<Variable>& v) { return conv2d(v[0], v[1], v[2], table, 2, 1); },
      {random_variable({2, 3, 5, 6}, gen), random_variable({4, 3, 3, 3}, gen),
       random_variable({4}, gen)});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.checked, 0);
}

TEST(Conv2dConnections, ATableOfOtherSizesOrAnUnreadOutputIsRefused) {
  Generator gen(7);
  const Variable x = random_variable({1, 3, 5, 5}, gen), w = random_variable({4, 2, 3, 3}, gen);
  EXPECT_EQ(thrown_message([&] {
              conv2d(random_variable({1, 2, 5, 5}, gen), w, {}, example_table());
            }),
            "conv2d: connection table of 4 x 3 channels does not match w [4, 2, 3, 3]");
  EXPECT_EQ(thrown_message([] { ConnectionTable(2, 2, {true, false, false, false}); }),
            "ConnectionTable: output channel 1 reads no input channel");
  EXPECT_EQ(thrown_message([] { ConnectionTable(2, 2, {true, true, true}); }),
            "ConnectionTable: 3 entries for 2 x 2 channels");
  (void)x;
}

// ---- Validation ------------------------------------------------------------------------------

TEST(Conv2dErrors, InputNotFourDimensionalNamesOpAndShape) {
  Variable x = variable({1, 3, 3}, std::vector<double>(9, 1.0));
  Variable w = variable({1, 1, 2, 2}, kernel_1234);
  expect_contains(thrown_message([&] { conv2d(x, w); }), {"conv2d", "[1, 3, 3]"});
}

TEST(Conv2dErrors, WeightNotFourDimensionalNamesOpAndShape) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9), w = variable({1, 4}, kernel_1234);
  expect_contains(thrown_message([&] { conv2d(x, w); }), {"conv2d", "[1, 4]"});
}

TEST(Conv2dErrors, ChannelMismatchNamesBothShapes) {
  Variable x = variable({1, 2, 3, 3}, std::vector<double>(18, 1.0));
  Variable w = variable({1, 3, 2, 2}, std::vector<double>(12, 1.0));
  expect_contains(thrown_message([&] { conv2d(x, w); }), {"conv2d", "[1, 2, 3, 3]", "[1, 3, 2, 2]"});
}

TEST(Conv2dErrors, BiasOfWrongSizeNamesShapes) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9), w = variable({1, 1, 2, 2}, kernel_1234);
  Variable b = variable({2}, {0, 0});
  expect_contains(thrown_message([&] { conv2d(x, w, b); }), {"conv2d", "[2]", "[1, 1, 2, 2]"});
}

TEST(Conv2dErrors, KernelLargerThanPaddedInputNamesShapes) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9);
  Variable w = variable({1, 1, 5, 5}, std::vector<double>(25, 1.0));
  expect_contains(thrown_message([&] { conv2d(x, w); }), {"conv2d", "[1, 1, 3, 3]", "[1, 1, 5, 5]"});
  // Padding 1 makes the input 5x5, which the kernel fits exactly.
  EXPECT_EQ(conv2d(x, w, {}, 1, 1).shape(), (Shape{1, 1, 1, 1}));
}

TEST(Conv2dErrors, StrideAndPaddingOutOfRange) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9), w = variable({1, 1, 2, 2}, kernel_1234);
  expect_contains(thrown_message([&] { conv2d(x, w, {}, 0, 0); }), {"conv2d", "stride"});
  expect_contains(thrown_message([&] { conv2d(x, w, {}, 1, -1); }), {"conv2d", "padding"});
}

TEST(Conv2dErrors, MixedDtypesNameOpAndTypes) {
  Variable x = variable({1, 1, 3, 3}, image_1_to_9);
  Variable w(Tensor::from({1, 1, 2, 2}, kernel_1234, DType::Float32));
  expect_contains(thrown_message([&] { conv2d(x, w); }), {"conv2d", "float64", "float32"});
}

// ---- Saved inputs modified in place (computed at once, not deferred) ----

TEST(Conv2d, SavesTheImageOnlyForTheWeightGradientAndTheWeightOnlyForTheImageGradient) {
  NoFusionGuard unfused;
  Variable x = variable({1, 1, 3, 3}, image_1_to_9, /*requires_grad=*/false);
  Variable w = variable({1, 1, 2, 2}, kernel_1234);
  Variable y = conv2d(x, w);
  EXPECT_FALSE(x.value().is_unique());  // saved for grad_w
  EXPECT_TRUE(w.value().is_unique());   // nobody needs grad_x
}

TEST(Conv2d, WeightModifiedInPlaceBeforeBackwardThrows) {
  NoFusionGuard unfused;
  Variable x = variable({1, 1, 3, 3}, image_1_to_9);
  Variable w(Tensor::from({1, 1, 2, 2}, kernel_1234, DType::Float64), true, "conv1.weight");
  Variable y = sum(conv2d(x, w));
  w.mutable_value().data<double>()[0] -= 0.5;  // an optimiser step
  expect_starts_with(thrown_message([&] { y.backward(); }),
                     "conv2d: input 1 ('conv1.weight'), saved for backward at version 0, was "
                     "modified in place since (now version 1)");
}

TEST(Conv2d, ImageModifiedInPlaceBeforeBackwardThrows) {
  NoFusionGuard unfused;
  Variable x = variable({1, 1, 3, 3}, image_1_to_9, /*requires_grad=*/false);
  Variable w = variable({1, 1, 2, 2}, kernel_1234);
  Variable y = sum(conv2d(x, w));
  x.mutable_value().fill(0.0);
  expect_starts_with(thrown_message([&] { y.backward(); }),
                     "conv2d: input 0, saved for backward at version 0, was modified in place");
}

TEST(Conv2d, WeightThatWasNotSavedMayBeModified) {
  NoFusionGuard unfused;
  Variable x = variable({1, 1, 3, 3}, image_1_to_9, /*requires_grad=*/false);
  Variable w = variable({1, 1, 2, 2}, kernel_1234);
  Variable y = conv2d(x, w);
  w.mutable_value().fill(0.0);
  y.backward(Tensor::ones(y.shape(), DType::Float64));
  expect_values(w.grad(), {1, 1, 2, 2}, {12, 16, 24, 28});
}
