// conv2d -> scaled_tanh -> subsampling2d run as conv2d_scaled_tanh_subsampling2d: the fused op
// against the unfused ops (the reference) in float64 for the forward, every gradient and the
// curvature rule; gradchecks of the fused op; float32 on each kernel path (AVX-512, AVX2, plain
// loops) against the unfused ops in float64; the fusion rules; inputs modified in place; errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/engine.hpp"
#include "autograd/gradcheck.hpp"
#include "ops/fusion/conv_subsampling.hpp"
#include "ops/fusion/fusion.hpp"
#include "ops/ops.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

struct Geometry {
  std::int64_t batch, in_channels, height, width, out_channels, kernel;
  std::int64_t stride, padding;
  bool bias;
  std::int64_t pool_kernel, pool_stride;
  bool pool_bias;
  double amplitude, slope;
  bool tanh_after;  // 1.7159 tanh(2/3 y) after the subsampling
  std::uint64_t seed;
  bool table = false;  // a connection table leaving about a third of the pairs out
};

// Every output channel reads at least one input channel.
ConnectionTable connections_of(const Geometry& g) {
  if (!g.table) return {};
  std::vector<bool> connected;
  for (std::int64_t o = 0; o < g.out_channels; ++o)
    for (std::int64_t c = 0; c < g.in_channels; ++c)
      connected.push_back(c == o % g.in_channels || (o * 7 + c * 3) % 5 < 3);
  return ConnectionTable(g.out_channels, g.in_channels, std::move(connected));
}

constexpr ScaledTanhOptions kLeCunTanh{.amplitude = 1.7159, .slope = 2.0 / 3};

std::ostream& operator<<(std::ostream& out, const Geometry& g) {
  return out << "x[" << g.batch << "," << g.in_channels << "," << g.height << "," << g.width
             << "] w[" << g.out_channels << "," << g.in_channels << "," << g.kernel << ","
             << g.kernel << "] stride " << g.stride << " padding " << g.padding
             << (g.bias ? " bias" : "") << " pool " << g.pool_kernel << "/" << g.pool_stride
             << (g.pool_bias ? " pool bias" : "") << " tanh " << g.amplitude << ", " << g.slope
             << (g.tanh_after ? " tanh after" : "") << (g.table ? " connection table" : "");
}

struct Inputs {
  Variable x, w, b, pool_weight, pool_bias;

  // The inputs in the op's order, the undefined ones left out.
  std::vector<Variable> list() const {
    std::vector<Variable> all{x, w};
    if (b.defined()) all.push_back(b);
    all.push_back(pool_weight);
    if (pool_bias.defined()) all.push_back(pool_bias);
    return all;
  }
};

Inputs random_inputs(const Geometry& g, DType dtype = DType::Float64) {
  Generator gen(g.seed);
  const double bound = 1 / std::sqrt(static_cast<double>(g.in_channels * g.kernel * g.kernel));
  const auto uniform = [&](Shape shape, double low, double high, const char* name) {
    return Variable(Tensor::uniform(std::move(shape), low, high, gen, dtype), true, name);
  };
  Inputs in;
  in.x = uniform({g.batch, g.in_channels, g.height, g.width}, -1, 1, "x");
  in.w = uniform({g.out_channels, g.in_channels, g.kernel, g.kernel}, -2 * bound, 2 * bound, "w");
  if (g.bias) in.b = uniform({g.out_channels}, -0.5, 0.5, "b");
  in.pool_weight = uniform({g.out_channels}, -1.5, 1.5, "pool_weight");
  if (g.pool_bias) in.pool_bias = uniform({g.out_channels}, -0.5, 0.5, "pool_bias");
  return in;
}

// The same values in another dtype, as fresh leaves.
Inputs converted(const Inputs& in, DType dtype) {
  const auto to = [dtype](const Variable& v) {
    return v.defined() ? Variable(v.value().to(dtype), true, v.name()) : Variable{};
  };
  return {to(in.x), to(in.w), to(in.b), to(in.pool_weight), to(in.pool_bias)};
}

ConvSubsamplingOptions options_of(const Geometry& g) {
  return {.stride = g.stride,
          .padding = g.padding,
          .connections = connections_of(g),
          .tanh = {.amplitude = g.amplitude, .slope = g.slope},
          .pool_kernel = g.pool_kernel,
          .pool_stride = g.pool_stride,
          .tanh_after = g.tanh_after ? std::optional(kLeCunTanh) : std::nullopt};
}

Variable fused(const Geometry& g, const Inputs& in) {
  return conv2d_scaled_tanh_subsampling2d(in.x, in.w, in.b, in.pool_weight, in.pool_bias,
                                          options_of(g));
}

// The model script's way, with every op computed at once.
Variable unfused(const Geometry& g, const Inputs& in) {
  NoFusionGuard unfused;
  const Variable a = scaled_tanh(conv2d(in.x, in.w, in.b, connections_of(g), g.stride, g.padding),
                                 g.amplitude, g.slope);
  const Variable y = subsampling2d(a, in.pool_weight, in.pool_bias, g.pool_kernel, g.pool_stride);
  return g.tanh_after ? scaled_tanh(y, kLeCunTanh.amplitude, kLeCunTanh.slope) : y;
}

// The target of the squared error the curvature pass differentiates: fixed random, of y's shape.
Tensor target_of(const Variable& y) {
  Generator gen(2024);
  return Tensor::uniform(y.shape(), -1, 1, gen, y.dtype());
}

// The gradients (dy drawn at random) and then the curvatures (of E = sum((y - target)^2)) of every
// input, the op run by `op` (fused or unfused) under a CurvatureGuard.
struct Derivatives {
  Tensor y;
  std::vector<Tensor> grads, curvatures;
};
template <class Op>
Derivatives derivatives(const Geometry& g, const Inputs& in, Op op) {
  Derivatives d;
  const Variable y = op(g, in);
  d.y = y.value();
  Generator gen(99);
  y.backward(Tensor::uniform(y.shape(), -1, 1, gen, y.dtype()));
  for (const Variable& v : in.list()) d.grads.push_back(v.grad());
  for (Variable v : in.list()) v.mutable_grad() = Tensor{};
  {
    CurvatureGuard curvature;
    const Variable y2 = op(g, in);
    backward_with_curvature(ag::sum(ag::pow(y2 - Variable(target_of(y2)), 2.0)));
  }
  for (const Variable& v : in.list()) d.curvatures.push_back(v.curvature());
  return d;
}

void expect_near_tensors(const Tensor& actual, const Tensor& expected, double tolerance,
                         const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what;
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], e[i], tolerance * (1 + std::abs(e[i]))) << what << " element " << i;
}

void expect_near(const Derivatives& actual, const Derivatives& expected, double tolerance) {
  expect_near_tensors(actual.y, expected.y, tolerance, "y");
  for (std::size_t i = 0; i < expected.grads.size(); ++i) {
    expect_near_tensors(actual.grads[i], expected.grads[i], tolerance, "grad of input " + std::to_string(i));
    expect_near_tensors(actual.curvatures[i], expected.curvatures[i], tolerance,
                        "curvature of input " + std::to_string(i));
  }
}

const std::vector<Geometry> kGeometries = {
    // batch, cin, h, w, cout, k, stride, padding, bias, pool kernel, pool stride, pool bias,
    // amplitude, slope, tanh after, seed
    {2, 1, 12, 12, 3, 5, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, true, 1},   // C1, smaller: by width
    {1, 6, 14, 14, 16, 5, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, true, 2},  // C3: by channel
    {1, 3, 9, 8, 16, 3, 1, 0, true, 2, 0, true, 1.0, 1.0, false, 3},          // odd rows: last dropped
    {1, 2, 9, 9, 4, 3, 1, 1, false, 3, 2, false, 1.0, 1.0, true, 4},          // overlapping windows
    {1, 2, 11, 11, 2, 3, 2, 1, true, 2, 0, true, 2.0, -0.5, false, 5},        // strided: plain loops
    {2, 2, 7, 7, 3, 3, 1, 1, true, 1, 0, false, -0.5, 3.0, false, 6},         // 1x1 windows
    {1, 4, 10, 10, 6, 5, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, true, 7, true},  // C3-like, a table
    {1, 3, 8, 8, 5, 3, 1, 1, false, 2, 0, false, 1.0, 1.0, false, 8, true},   // a table, padded
};

class ConvSubsamplingGeometry : public ::testing::TestWithParam<Geometry> {};

TEST_P(ConvSubsamplingGeometry, ForwardGradientsAndCurvatureEqualUnfusedOpsInFloat64) {
  const Geometry g = GetParam();
  const Derivatives one = derivatives(g, random_inputs(g), fused);
  const Derivatives three = derivatives(g, random_inputs(g), unfused);
  expect_near(one, three, 1e-12);
}

TEST_P(ConvSubsamplingGeometry, GradientsMatchNumeric) {
  const Geometry g = GetParam();
  const GradcheckResult result = gradcheck(
      [&](const std::vector<Variable>& v) {
        std::size_t next = 2;
        Inputs in{v[0], v[1], {}, {}, {}};
        if (g.bias) in.b = v[next++];
        in.pool_weight = v[next++];
        if (g.pool_bias) in.pool_bias = v[next++];
        return fused(g, in);
      },
      random_inputs(g).list());
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_GT(result.checked, 0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvSubsamplingGeometry, ::testing::ValuesIn(kGeometries));

// ---- float32 on each kernel path ----

class ConvSubsamplingFloat32 : public ::testing::TestWithParam<std::tuple<kernels::Isa, Geometry>> {};

TEST_P(ConvSubsamplingFloat32, MatchesUnfusedOpsInFloat64) {
  const auto& [isa, g] = GetParam();
  if (kernels::widest_isa() < isa) GTEST_SKIP() << "built without " << kernels::isa_name(isa);
  const Inputs in32 = random_inputs(g, DType::Float32);
  Derivatives fast;
  {
    kernels::IsaLimit limit(isa);
    // The path the op takes: the convolution's kernels (the subsampling's follow them).
    const ConvGeometry geometry = conv_geometry(in32.x, in32.w, in32.b, g.stride, g.padding);
    const auto kernels = kernels::direct_convolution<float>(geometry, in32.w.value().data<float>());
    const bool covered = g.stride == 1;
    EXPECT_EQ(kernels->isa(), covered ? isa : kernels::Isa::Plain);
    fast = derivatives(g, in32, fused);
  }
  const Derivatives exact = derivatives(g, converted(in32, DType::Float64), unfused);
  expect_near(fast, exact, 2e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvSubsamplingFloat32,
    ::testing::Combine(
        ::testing::Values(kernels::Isa::Avx512, kernels::Isa::Avx2, kernels::Isa::Plain),
        ::testing::Values(
            Geometry{3, 1, 32, 32, 6, 5, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, true, 11},  // C1
            Geometry{3, 6, 14, 14, 16, 5, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, true, 12}, // C3
            Geometry{2, 2, 13, 17, 7, 3, 1, 1, true, 2, 0, false, 1.0, 1.0, false, 13},  // odd sizes
            Geometry{2, 3, 9, 9, 32, 3, 1, 0, false, 2, 0, true, 1.0, 0.5, false, 14},   // 32 channels
            Geometry{2, 2, 9, 9, 4, 3, 1, 1, true, 3, 2, true, 1.0, 1.0, true, 15},     // overlaps
            // Batches of a block of images or more: the lanes kernels, their last block partial.
            Geometry{19, 1, 32, 32, 6, 5, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, true, 16},
            Geometry{19, 6, 14, 14, 16, 5, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, true, 17, true},
            Geometry{17, 3, 12, 10, 5, 3, 1, 0, false, 2, 0, false, 1.0, 0.5, false, 18, true})),
    [](const auto& info) {
      std::string name = kernels::isa_name(std::get<0>(info.param));
      std::erase(name, '-');
      return name + "_" + std::to_string(info.index);
    });

// ---- The fusion rules, through the ordinary ops ----

const Geometry kSmall{2, 2, 10, 10, 3, 3, 1, 0, true, 2, 0, true, 1.7159, 2.0 / 3, false, 21};

Variable model_script(const Inputs& in) {
  return subsampling2d(scaled_tanh(conv2d(in.x, in.w, in.b), 1.7159, 2.0 / 3), in.pool_weight,
                       in.pool_bias, 2);
}

TEST(ConvSubsamplingFusion, ModelScriptChainRunsAsOneOp) {
  const Inputs in = random_inputs(kSmall);
  const Variable y = model_script(in);
  EXPECT_EQ(y.node()->op, "conv2d+scaled_tanh+subsampling2d");
  EXPECT_EQ(y.node()->inputs.size(), 5u);
  NoFusionGuard unfused;
  EXPECT_EQ(model_script(in).node()->op, "subsampling2d");
}

TEST(ConvSubsamplingFusion, TanhUsedElsewhereIsComputedTheUsualWay) {
  Tensor expected[5];
  for (const bool fusion : {false, true}) {
    const Inputs in = random_inputs(kSmall);
    std::optional<NoFusionGuard> guard;
    if (!fusion) guard.emplace();
    const Variable a = scaled_tanh(conv2d(in.x, in.w, in.b), 1.7159, 2.0 / 3);
    const Variable y = add(sum(subsampling2d(a, in.pool_weight, in.pool_bias, 2)), sum(mul(a, a)));
    EXPECT_EQ(a.deferred(), nullptr);
    EXPECT_EQ(a.node()->op, "scaled_tanh");
    y.backward();
    const std::vector<Variable> list = in.list();
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (!fusion) expected[i] = list[i].grad();
      else expect_near_tensors(list[i].grad(), expected[i], 1e-13, "input " + std::to_string(i));
    }
  }
}

TEST(ConvSubsamplingFusion, OtherChainsOverADeferredTanhAreNotFused) {
  const Inputs in = random_inputs(kSmall);
  const auto tanh_of_conv = [&] { return scaled_tanh(conv2d(in.x, in.w, in.b), 1.5, 0.5); };
  EXPECT_EQ(max_pool2d(tanh_of_conv(), 2).node()->op, "max_pool2d");
  EXPECT_EQ(relu(tanh_of_conv()).node()->op, "relu");
  EXPECT_EQ(scaled_tanh(tanh_of_conv(), 1, 1).node()->op, "scaled_tanh");
  // subsampling over a relu (or a bare convolution) is not this chain either.
  EXPECT_EQ(subsampling2d(relu(conv2d(in.x, in.w, in.b)), in.pool_weight, in.pool_bias, 2)
                .node()
                ->op,
            "subsampling2d");
  EXPECT_EQ(subsampling2d(conv2d(in.x, in.w, in.b), in.pool_weight, in.pool_bias, 2).node()->op,
            "subsampling2d");
}

// The 1998 LeNet-5's layer: squash(subsampling(squash(conv))).
Variable layer_script(const Inputs& in) {
  return scaled_tanh(model_script(in), 1.7159, 2.0 / 3);
}

TEST(ConvSubsamplingFusion, ATanhAfterTheSubsamplingJoinsTheChain) {
  const Inputs in = random_inputs(kSmall);
  const Variable y = layer_script(in);
  EXPECT_EQ(y.node()->op, "conv2d+scaled_tanh+subsampling2d+scaled_tanh");
  EXPECT_EQ(y.node()->inputs.size(), 5u);
  // Any other use of the subsampling runs the chain without the second tanh.
  const Variable pooled = model_script(in);
  ASSERT_NE(pooled.deferred(), nullptr);
  EXPECT_EQ(pooled.shape(), (Shape{2, 3, 4, 4}));
  EXPECT_EQ(sum(pooled).node()->inputs[0].node()->op, "conv2d+scaled_tanh+subsampling2d");
}

TEST(ConvSubsamplingFusion, TheSubsamplingsInputsModifiedBeforeTheTanhThrow) {
  const Inputs in = random_inputs(kSmall);
  const Variable pooled = model_script(in);
  Variable pool_weight = in.pool_weight;
  pool_weight.mutable_value().fill(2.0);
  EXPECT_EQ(thrown_message([&] { scaled_tanh(pooled, 1.7159, 2.0 / 3); }),
            "subsampling2d: input 1 ('pool_weight') was modified in place after subsampling2d was "
            "called and before its deferred result was computed (version 0, now 2); use the "
            "result before modifying its inputs, or compute it at once under NoFusionGuard");
}

TEST(ConvSubsamplingFusion, AModeChangeBeforeTheTanhKeepsItApart) {
  for (const bool curvature_mode : {false, true}) {
    const Inputs in = random_inputs(kSmall);
    Variable pooled;
    {
      std::optional<NoGradGuard> no_grad;
      std::optional<CurvatureGuard> curvature;
      if (curvature_mode) curvature.emplace();
      else no_grad.emplace();
      pooled = model_script(in);
    }
    const Variable y = scaled_tanh(pooled, 1.7159, 2.0 / 3);
    EXPECT_EQ(y.node() ? std::string(y.node()->op) : "leaf", curvature_mode ? "scaled_tanh" : "leaf");
    // Computed in the modes it was called in: without a graph under no_grad.
    EXPECT_EQ(pooled.requires_grad(), curvature_mode);
  }
}

TEST(ConvSubsamplingFusion, ATanhComputedMeanwhileIsNotComputedAgain) {
  Tensor expected;
  for (const bool fusion : {false, true}) {
    const Inputs in = random_inputs(kSmall);
    std::optional<NoFusionGuard> guard;
    if (!fusion) guard.emplace();
    const Variable a = scaled_tanh(conv2d(in.x, in.w, in.b), 1.7159, 2.0 / 3);
    const Variable pooled = subsampling2d(a, in.pool_weight, in.pool_bias, 2);
    const Variable other = sum(a);  // computes a, unfused
    const Variable y = scaled_tanh(pooled, 1.7159, 2.0 / 3);
    EXPECT_EQ(y.node()->op, "scaled_tanh");
    EXPECT_EQ(y.node()->inputs[0].node()->op, "subsampling2d");
    add(sum(y), other).backward();
    if (!fusion) expected = in.w.grad();
    else expect_near_tensors(in.w.grad(), expected, 1e-13, "grad_w");
  }
}

TEST(ConvSubsamplingFusion, UnderNoGradFusesAndRecordsNothing) {
  const Inputs in = random_inputs(kSmall);
  Tensor expected;
  {
    NoFusionGuard unfused;
    expected = model_script(in).value();
  }
  NoGradGuard no_grad;
  const Variable y = model_script(in);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.is_leaf());
  expect_near_tensors(y.value(), expected, 1e-13, "y");
}

TEST(ConvSubsamplingFusion, TanhDeferredUnderNoGradStaysWithoutGradient) {
  const Inputs in = random_inputs(kSmall);
  Variable a;
  {
    NoGradGuard no_grad;
    a = scaled_tanh(conv2d(in.x, in.w, in.b), 1.7159, 2.0 / 3);
  }
  // Grad mode is back on; the pool's own parameters want gradients, the convolution's must not
  // get any: computed unfused.
  const Variable y = subsampling2d(a, in.pool_weight, in.pool_bias, 2);
  EXPECT_EQ(y.node()->op, "subsampling2d");
  sum(y).backward();
  EXPECT_FALSE(in.w.has_grad());
  EXPECT_TRUE(in.pool_weight.has_grad());
}

TEST(ConvSubsamplingFusion, AChangeOfCurvatureModeInBetweenIsNotFused) {
  const Inputs in = random_inputs(kSmall);
  Variable a;
  {
    CurvatureGuard curvature;
    a = scaled_tanh(conv2d(in.x, in.w, in.b), 1.7159, 2.0 / 3);
  }
  EXPECT_EQ(subsampling2d(a, in.pool_weight, in.pool_bias, 2).node()->op, "subsampling2d");
  const Variable b = scaled_tanh(conv2d(in.x, in.w, in.b), 1.7159, 2.0 / 3);
  CurvatureGuard curvature;
  EXPECT_EQ(subsampling2d(b, in.pool_weight, in.pool_bias, 2).node()->op, "subsampling2d");
}

TEST(ConvSubsamplingFusion, InputChangedBeforeTheSubsamplingThrows) {
  const Inputs in = random_inputs(kSmall);
  const Variable a = scaled_tanh(conv2d(in.x, in.w, in.b), 1.7159, 2.0 / 3);
  Variable w = in.w;
  w.mutable_value().data<double>()[0] += 0.25;
  expect_starts_with(thrown_message([&] { subsampling2d(a, in.pool_weight, in.pool_bias, 2); }),
                     "conv2d: input 1 ('w') was modified in place after conv2d was called");
}

TEST(ConvSubsamplingFusion, SavedInputsModifiedBeforeBackwardAreCaught) {
  for (const char* which : {"w", "pool_weight"}) {
    const Inputs in = random_inputs(kSmall);
    const Variable loss = sum(model_script(in));
    ASSERT_EQ(loss.node()->inputs[0].node()->op, "conv2d+scaled_tanh+subsampling2d");
    Variable v = std::string(which) == "w" ? in.w : in.pool_weight;
    v.mutable_value().data<double>()[0] -= 0.01;
    expect_starts_with(thrown_message([&] { loss.backward(); }),
                       "conv2d+scaled_tanh+subsampling2d: input " +
                           std::string(std::string(which) == "w" ? "1" : "3") + " ('" + which +
                           "'), saved for backward at version 0, was modified in place");
  }
}

TEST(ConvSubsamplingFusion, WeightOfAFirstLayerIsNotSaved) {
  // The input image wants no gradient: w is read only for grad_x, so it is not saved.
  const Inputs in = random_inputs(kSmall);
  const Variable image(in.x.value());
  const Variable loss = sum(conv2d_scaled_tanh_subsampling2d(image, in.w, in.b, in.pool_weight,
                                                             in.pool_bias, options_of(kSmall)));
  EXPECT_TRUE(in.w.value().is_unique());
  loss.backward();
  EXPECT_TRUE(in.w.has_grad());
}

TEST(ConvSubsamplingErrors, NameTheOpAndTheProblem) {
  const Inputs in = random_inputs(kSmall);  // 8x8 convolution output
  const auto call = [&](const ConvSubsamplingOptions& options, const Variable& pool_weight) {
    return thrown_message([&] {
      conv2d_scaled_tanh_subsampling2d(in.x, in.w, in.b, pool_weight, in.pool_bias, options);
    });
  };
  EXPECT_EQ(call({.pool_kernel = 9}, in.pool_weight),
            "conv2d_scaled_tanh_subsampling2d: pool kernel 9 is larger than the 8x8 convolution "
            "output");
  EXPECT_EQ(call({.tanh = {.amplitude = 0}}, in.pool_weight),
            "conv2d_scaled_tanh_subsampling2d: amplitude must not be 0");
  EXPECT_EQ(call({.tanh_after = ScaledTanhOptions{.amplitude = 0}}, in.pool_weight),
            "conv2d_scaled_tanh_subsampling2d: amplitude must not be 0");
  EXPECT_EQ(call({}, variable({2}, {1, 1})),
            "conv2d_scaled_tanh_subsampling2d: pool weight must be [3], got [2]");
  EXPECT_EQ(call({}, Variable(Tensor::ones({3}))),
            "conv2d_scaled_tanh_subsampling2d: pool weight is float32 but x is float64");
  // Through the ordinary ops, each error is its own op's.
  expect_starts_with(thrown_message([&] {
                       subsampling2d(scaled_tanh(conv2d(in.x, in.w, in.b), 1, 1), in.pool_weight,
                                     in.pool_bias, 9);
                     }),
                     "subsampling2d: kernel 9 is larger than x");
}

}  // namespace
