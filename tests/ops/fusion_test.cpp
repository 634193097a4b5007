// Fusion: conv2d -> relu -> max_pool2d run as conv2d_max_pool2d. The fused path against the unfused
// ops (the reference) in float64, gradchecks of the fused op, the fusion rules (when a chain fuses
// and when a deferred conv2d is computed the ordinary way), and the AVX-512 kernels against the
// plain-loop kernels in float32, and inputs modified in place before a deferred conv2d is computed
// or before the backward of the fused op.
#include "ops/fusion/fusion.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/gradcheck.hpp"
#include "ops/fusion/conv_pool.hpp"
#include "ops/ops.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::testing;

namespace {

struct Geometry {
  std::int64_t batch, in_channels, height, width, out_channels, kernel;
  std::int64_t stride, padding;
  bool relu, bias;
  std::int64_t pool_kernel, pool_stride;
  std::uint64_t seed;
};

std::ostream& operator<<(std::ostream& out, const Geometry& g) {
  return out << "x[" << g.batch << "," << g.in_channels << "," << g.height << "," << g.width
             << "] w[" << g.out_channels << "," << g.in_channels << "," << g.kernel << ","
             << g.kernel << "] stride " << g.stride << " padding " << g.padding
             << (g.relu ? " relu" : "") << (g.bias ? " bias" : "") << " pool " << g.pool_kernel
             << "/" << g.pool_stride;
}

struct Inputs {
  Variable x, w, b;
};

Inputs random_inputs(const Geometry& g, DType dtype = DType::Float64) {
  Generator gen(g.seed);
  const double bound = 1 / std::sqrt(static_cast<double>(g.in_channels * g.kernel * g.kernel));
  Inputs in;
  in.x = Variable(Tensor::uniform({g.batch, g.in_channels, g.height, g.width}, -1, 1, gen, dtype),
                  true, "x");
  in.w = Variable(Tensor::uniform({g.out_channels, g.in_channels, g.kernel, g.kernel}, -bound,
                                  bound, gen, dtype),
                  true, "w");
  if (g.bias)
    in.b = Variable(Tensor::uniform({g.out_channels}, -bound, bound, gen, dtype), true, "b");
  return in;
}

ConvPoolOptions options_of(const Geometry& g) {
  return {.stride = g.stride,
          .padding = g.padding,
          .relu = g.relu,
          .pool_kernel = g.pool_kernel,
          .pool_stride = g.pool_stride};
}

// The model script's way, with every op computed at once.
Variable unfused(const Geometry& g, const Inputs& in) {
  NoFusionGuard unfused;
  Variable z = conv2d(in.x, in.w, in.b, g.stride, g.padding);
  return max_pool2d(g.relu ? relu(z) : z, g.pool_kernel, g.pool_stride);
}

// How close the convolution's output comes to a relu kink (where relu is on) or to a tie between
// the two largest values of a pooling window whose maximum passes: gradients are only
// well-defined (and comparable across paths) when this is comfortably above the rounding noise.
double margin(const Geometry& g, const Inputs& in) {
  NoFusionGuard unfused;
  NoGradGuard no_grad;
  const Tensor z = conv2d(in.x, in.w, in.b, g.stride, g.padding).value().to(DType::Float64);
  const std::int64_t planes = z.size(0) * z.size(1), H = z.size(2), W = z.size(3);
  const std::int64_t stride = g.pool_stride == 0 ? g.pool_kernel : g.pool_stride;
  const std::vector<double> v = z.to_vector();
  double closest = std::numeric_limits<double>::infinity();
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t i = 0; i + g.pool_kernel <= H; i += stride)
      for (std::int64_t j = 0; j + g.pool_kernel <= W; j += stride) {
        std::vector<double> window;
        for (std::int64_t a = 0; a < g.pool_kernel; ++a)
          for (std::int64_t c = 0; c < g.pool_kernel; ++c)
            window.push_back(v[static_cast<std::size_t>((p * H + i + a) * W + j + c)]);
        std::sort(window.begin(), window.end(), std::greater<>());
        if (g.relu) {
          closest = std::min(closest, std::abs(window[0]));
          if (window[0] <= 0) continue;  // clamped to 0: no gradient, ties harmless
        }
        if (window.size() > 1) closest = std::min(closest, window[0] - window[1]);
      }
  return closest;
}

void expect_near_tensors(const Tensor& actual, const Tensor& expected, double tolerance,
                         const char* what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], e[i], tolerance * (1 + std::abs(e[i]))) << what << " element " << i;
}

class FusedGeometry : public ::testing::TestWithParam<Geometry> {};

TEST_P(FusedGeometry, ForwardEqualsUnfusedOps) {
  const Geometry g = GetParam();
  const Inputs in = random_inputs(g);
  const Variable fused = conv2d_max_pool2d(in.x, in.w, in.b, options_of(g));
  expect_near_tensors(fused.value(), unfused(g, in).value(), 1e-13, "y");
}

TEST_P(FusedGeometry, GradientsEqualUnfusedOps) {
  const Geometry g = GetParam();
  ASSERT_GT(margin(g, random_inputs(g)), 1e-6) << "inputs too close to a kink or tie: change seed";
  TensorList grads[2];
  for (int path = 0; path < 2; ++path) {
    const Inputs in = random_inputs(g);
    const Variable y =
        path == 0 ? conv2d_max_pool2d(in.x, in.w, in.b, options_of(g)) : unfused(g, in);
    Generator gen(99);
    y.backward(Tensor::uniform(y.shape(), -1, 1, gen, DType::Float64));
    grads[path] = {in.x.grad(), in.w.grad()};
    if (g.bias) grads[path].push_back(in.b.grad());
  }
  const char* names[] = {"grad_x", "grad_w", "grad_b"};
  for (std::size_t i = 0; i < grads[0].size(); ++i)
    expect_near_tensors(grads[0][i], grads[1][i], 1e-13, names[i]);
}

TEST_P(FusedGeometry, GradientsMatchNumeric) {
  const Geometry g = GetParam();
  const Inputs in = random_inputs(g);
  // gradcheck nudges inputs by 1e-6; a kink or tie closer than that would make the numeric side
  // meaningless, so the inputs are checked to stay 100 nudges away.
  ASSERT_GT(margin(g, in), 1e-4) << "inputs too close to a kink or tie: change seed";
  std::vector<Variable> inputs{in.x, in.w};
  if (g.bias) inputs.push_back(in.b);
  const GradcheckResult result = gradcheck(
      [&](const std::vector<Variable>& v) {
        return conv2d_max_pool2d(v[0], v[1], g.bias ? v[2] : Variable{}, options_of(g));
      },
      inputs);
  EXPECT_TRUE(result.ok) << result.message;
  EXPECT_GT(result.checked, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedGeometry,
    ::testing::Values(
        // batch, cin, h, w, cout, k, stride, padding, relu, bias, pool kernel, pool stride, seed
        Geometry{2, 1, 12, 12, 3, 5, 1, 2, true, true, 2, 0, 1},     // LeNet's conv1, smaller
        Geometry{2, 3, 9, 9, 4, 3, 1, 0, true, true, 2, 2, 2},       // odd output: last row dropped
        Geometry{1, 2, 11, 11, 2, 3, 2, 1, false, true, 2, 0, 3},    // strided, no relu
        Geometry{2, 2, 9, 8, 3, 2, 1, 0, true, false, 3, 2, 4},      // overlapping windows, no bias
        Geometry{1, 2, 6, 7, 2, 3, 1, 1, true, true, 1, 0, 5},       // 1x1 pool: conv + relu
        Geometry{1, 6, 14, 14, 16, 5, 1, 0, true, true, 2, 0, 6}));  // LeNet's conv2

// ---- The fusion rules, through the ordinary ops ----

TEST(Fusion, ModelScriptChainRunsAsOneOp) {
  const Geometry g{2, 1, 12, 12, 3, 5, 1, 2, true, true, 2, 0, 1};
  const Inputs in = random_inputs(g);
  const Variable y = max_pool2d(relu(conv2d(in.x, in.w, in.b, 1, 2)), 2);
  EXPECT_EQ(y.node()->op, "conv2d+relu+max_pool2d");
  EXPECT_EQ(y.node()->inputs.size(), 3u);
  EXPECT_EQ(unfused(g, in).node()->op, "max_pool2d");
}

TEST(Fusion, PoolWithoutReluFusesToo) {
  const Inputs in = random_inputs({1, 2, 8, 8, 2, 3, 1, 0, false, true, 2, 0, 7});
  EXPECT_EQ(max_pool2d(conv2d(in.x, in.w, in.b), 2).node()->op, "conv2d+max_pool2d");
}

TEST(Fusion, DeferredConvolutionUsedElsewhereIsComputedTheUsualWay) {
  const Geometry g{2, 2, 8, 8, 3, 3, 1, 1, true, true, 2, 0, 8};
  ASSERT_GT(margin(g, random_inputs(g)), 1e-6);
  Tensor expected_x, expected_w, expected_b;
  for (bool fusion : {false, true}) {
    const Inputs in = random_inputs(g);
    std::optional<NoFusionGuard> guard;
    if (!fusion) guard.emplace();
    const Variable z = conv2d(in.x, in.w, in.b, 1, 1);  // used twice: pooled and summed
    const Variable y = add(sum(max_pool2d(relu(z), 2)), sum(mul(z, z)));
    EXPECT_EQ(z.deferred(), nullptr);  // the second use computed it
    EXPECT_EQ(z.node()->op, "conv2d");
    y.backward();
    if (!fusion) {
      expected_x = in.x.grad(), expected_w = in.w.grad(), expected_b = in.b.grad();
    } else {
      expect_near_tensors(in.x.grad(), expected_x, 1e-13, "grad_x");
      expect_near_tensors(in.w.grad(), expected_w, 1e-13, "grad_w");
      expect_near_tensors(in.b.grad(), expected_b, 1e-13, "grad_b");
    }
  }
}

TEST(Fusion, ReluOverAConvolutionAlreadyComputedIsNotFusedAgain) {
  const Inputs in = random_inputs({1, 1, 6, 6, 2, 3, 1, 0, true, true, 2, 0, 9});
  const Variable z = conv2d(in.x, in.w, in.b);
  const Variable r = relu(z);
  z.value();  // computes the convolution
  EXPECT_EQ(max_pool2d(r, 2).node()->op, "max_pool2d");
}

TEST(Fusion, DeferredValueKnowsShapeWithoutComputing) {
  const Inputs in = random_inputs({2, 1, 10, 10, 3, 5, 1, 2, true, true, 2, 0, 10});
  const Variable r = relu(conv2d(in.x, in.w, in.b, 1, 2));
  ASSERT_NE(r.deferred(), nullptr);
  EXPECT_EQ(r.shape(), (Shape{2, 3, 10, 10}));
  EXPECT_EQ(r.dtype(), DType::Float64);
  EXPECT_TRUE(r.requires_grad());
  EXPECT_EQ(r.node()->op, "relu");  // asking for the node computes it
  EXPECT_EQ(r.deferred(), nullptr);
}

TEST(Fusion, UnderNoGradFusesAndRecordsNothing) {
  const Inputs in = random_inputs({2, 1, 12, 12, 3, 5, 1, 2, true, true, 2, 0, 1});
  NoGradGuard no_grad;
  const Variable y = max_pool2d(relu(conv2d(in.x, in.w, in.b, 1, 2)), 2);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.is_leaf());
}

TEST(Fusion, ConvolutionDeferredUnderNoGradStaysWithoutGradient) {
  const Inputs in = random_inputs({1, 1, 8, 8, 2, 3, 1, 0, true, true, 2, 0, 11});
  Variable z;
  {
    NoGradGuard no_grad;
    z = relu(conv2d(in.x, in.w, in.b));
  }
  const Variable y = max_pool2d(z, 2);  // grad mode is back on, but z was made without it
  EXPECT_FALSE(y.requires_grad());
  EXPECT_FALSE(z.requires_grad());
  EXPECT_TRUE(z.is_leaf());
}

TEST(Fusion, ErrorsAreReportedByTheOpThatWasCalled) {
  const Inputs in = random_inputs({1, 2, 8, 8, 2, 3, 1, 0, true, true, 2, 0, 12});
  EXPECT_THROW(conv2d(in.x, Variable(Tensor({2, 3, 3, 3}, DType::Float64))), std::invalid_argument);
  EXPECT_THROW(max_pool2d(relu(conv2d(in.x, in.w)), 7), std::invalid_argument);  // 6x6 output
}

TEST(ConvPoolErrors, PoolKernelOutOfRangeNamesOp) {
  const Inputs in = random_inputs({1, 1, 20, 20, 1, 3, 1, 0, true, true, 2, 0, 13});
  try {
    conv2d_max_pool2d(in.x, in.w, in.b, {.pool_kernel = 16});
    FAIL() << "expected a throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "conv2d_max_pool2d: pool kernel must be in [1, 15], got 16");
  }
}

// ---- Inputs modified in place ----

// A deferred conv2d reads its inputs when it is computed, later than the script called it: a write
// in between would make the fused result differ from the unfused ops' (computed at once), so it
// throws instead, whichever use comes first.
TEST(Fusion, DeferredConvolutionWhoseWeightChangedThrowsWhenComputed) {
  const Inputs in = random_inputs({1, 1, 6, 6, 2, 3, 1, 0, true, true, 2, 0, 14});
  const Variable z = conv2d(in.x, in.w, in.b);
  ASSERT_NE(z.deferred(), nullptr);
  Variable w = in.w;
  w.mutable_value().data<double>()[0] += 0.25;  // an optimiser step
  EXPECT_EQ(thrown_message([&] { z.value(); }),
            "conv2d: input 1 ('w') was modified in place after conv2d was called and before its "
            "deferred result was computed (version 0, now 1); use the result before modifying "
            "its inputs, or compute it at once under NoFusionGuard");
}

TEST(Fusion, InputChangedBeforeThePoolThrows) {
  const Geometry g{1, 1, 6, 6, 2, 3, 1, 0, true, true, 2, 0, 15};
  {
    const Inputs in = random_inputs(g);
    const Variable z = conv2d(in.x, in.w, in.b);
    Variable b = in.b;
    b.mutable_value().fill(0.5);  // before the relu: it defers too, and the pool checks
    expect_starts_with(thrown_message([&] { max_pool2d(relu(z), 2); }),
                       "conv2d: input 2 ('b') was modified");
  }
  {
    const Inputs in = random_inputs(g);
    const Variable r = relu(conv2d(in.x, in.w, in.b));
    Variable x = in.x;
    x.mutable_value().set(0, 2.0);
    expect_starts_with(thrown_message([&] { max_pool2d(r, 2); }),
                       "conv2d: input 0 ('x') was modified");
  }
  {
    const Inputs in = random_inputs({1, 1, 6, 6, 2, 3, 1, 0, false, true, 2, 0, 15});
    const Variable z = conv2d(in.x, in.w, in.b);
    Variable w = in.w;
    w.mutable_value();
    expect_starts_with(thrown_message([&] { max_pool2d(z, 2); }),
                       "conv2d: input 1 ('w') was modified");
  }
}

TEST(Fusion, UnfusedConvolutionReadsItsInputsAtOnce) {
  // The reference behaviour the deferred path must not silently depart from.
  const Inputs in = random_inputs({1, 1, 6, 6, 2, 3, 1, 0, true, true, 2, 0, 16});
  NoFusionGuard unfused;
  const Variable z = conv2d(in.x, in.w, in.b);
  const Tensor before = z.value().clone();
  Variable b = in.b;
  b.mutable_value().fill(100.0);  // b is not saved for backward: nothing to complain about
  expect_near_tensors(z.value(), before, 0, "z");
}

TEST(Fusion, WeightModifiedAfterTheFusedForwardIsCaughtInBackward) {
  const Inputs in = random_inputs({1, 2, 8, 8, 3, 3, 1, 1, true, true, 2, 0, 17});
  const Variable loss = sum(max_pool2d(relu(conv2d(in.x, in.w, in.b, 1, 1)), 2));
  ASSERT_EQ(loss.node()->inputs[0].node()->op, "conv2d+relu+max_pool2d");
  Variable w = in.w;
  w.mutable_value().data<double>()[1] -= 0.01;
  EXPECT_EQ(thrown_message([&] { loss.backward(); }),
            "conv2d+relu+max_pool2d: input 1 ('w'), saved for backward at version 0, was "
            "modified in place since (now version 1); run backward before modifying it, or give "
            "the op a clone of it");
}

TEST(ConvPool, ImageModifiedBeforeBackwardThrowsWhenTheWeightNeedsIt) {
  const Inputs in = random_inputs({1, 1, 8, 8, 2, 3, 1, 0, true, true, 2, 0, 18});
  const Variable image(in.x.value().clone());  // a first layer's input: no gradient
  const Variable loss = sum(conv2d_max_pool2d(image, in.w, in.b, {}));
  Variable(image).mutable_value().fill(0.0);
  expect_starts_with(thrown_message([&] { loss.backward(); }),
                     "conv2d+relu+max_pool2d: input 0, saved for backward at version 0, was "
                     "modified in place");
}

TEST(ConvPool, WeightOfAFirstLayerIsNotSavedAndMayBeModified) {
  // With an input image that needs no gradient, the backward never reads w (only grad_w and
  // grad_b are wanted, and they read x and dy), so an update of w before it changes nothing.
  const Geometry g{2, 1, 10, 10, 3, 3, 1, 1, true, true, 2, 0, 19};
  const Inputs in = random_inputs(g);
  ASSERT_GT(margin(g, in), 1e-6);
  const Variable image(in.x.value());
  sum(conv2d_max_pool2d(image, in.w, in.b, options_of(g))).backward();
  const Tensor expected_w = in.w.grad().clone(), expected_b = in.b.grad().clone();
  Variable w = in.w, b = in.b;
  w.zero_grad(), b.zero_grad();
  const Variable loss = sum(conv2d_max_pool2d(image, in.w, in.b, options_of(g)));
  EXPECT_TRUE(w.value().is_unique());  // not saved
  w.mutable_value().fill(0.0);
  loss.backward();
  expect_near_tensors(w.grad(), expected_w, 0, "grad_w");
  expect_near_tensors(b.grad(), expected_b, 0, "grad_b");
}

// ---- The vectorised kernels against the plain loops (float32, same inputs) ----

// A kernel family: its entry points, and whether this build's CPU has its instructions.
struct KernelFamily {
  const char* name;
  bool built;
  decltype(&kernels::conv_pool_forward_avx512) forward;
  decltype(&kernels::conv_pool_backward_avx512) backward;
};

// The kernels exist only in builds for machines with the instructions (-march=native here).
const KernelFamily kAvx512 {
  "AVX-512",
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
      true,
#else
      false,
#endif
      kernels::conv_pool_forward_avx512, kernels::conv_pool_backward_avx512
};
const KernelFamily kAvx2 {
  "AVX2",
#if defined(__AVX2__) && defined(__FMA__)
      true,
#else
      false,
#endif
      kernels::conv_pool_forward_avx2, kernels::conv_pool_backward_avx2
};

struct KernelRun {
  std::vector<float> y, dx, dw, db;
  std::vector<std::uint8_t> winners;
  bool fast_forward = false, fast_backward = false;
};

kernels::PoolGeometry pool_geometry(const Geometry& geometry, const ConvGeometry& g) {
  const std::int64_t pool_stride =
      geometry.pool_stride ? geometry.pool_stride : geometry.pool_kernel;
  return {geometry.pool_kernel, pool_stride, (g.out_h - geometry.pool_kernel) / pool_stride + 1,
          (g.out_w - geometry.pool_kernel) / pool_stride + 1, geometry.relu};
}

std::size_t outputs(const ConvGeometry& g, const kernels::PoolGeometry& pool) {
  return static_cast<std::size_t>(g.batch * g.out_channels * pool.out_h * pool.out_w);
}

// family null: the plain loops.
KernelRun run_kernels(const Geometry& geometry, const KernelFamily* family) {
  const Inputs in = random_inputs(geometry, DType::Float32);
  ConvGeometry g = conv_geometry(in.x, in.w, in.b, geometry.stride, geometry.padding);
  const kernels::PoolGeometry pool = pool_geometry(geometry, g);
  const std::size_t count = outputs(g, pool);
  KernelRun run;
  run.y.assign(count, -7);
  run.winners.assign(count, 0xEE);
  run.dx.assign(static_cast<std::size_t>(in.x.value().numel()), 0);
  run.dw.assign(static_cast<std::size_t>(in.w.value().numel()), 0);
  run.db.assign(static_cast<std::size_t>(g.out_channels), 0);
  const float* x = in.x.value().data<float>();
  const float* w = in.w.value().data<float>();
  const float* b = geometry.bias ? in.b.value().data<float>() : nullptr;
  Generator gen(5);
  const Tensor dy = Tensor::uniform({static_cast<std::int64_t>(count)}, -1, 1, gen);
  if (family) {
    run.fast_forward = family->forward(g, pool, x, w, b, run.y.data(), run.winners.data());
    run.fast_backward = family->backward(g, pool, x, w, dy.data<float>(), run.winners.data(),
                                         run.dx.data(), run.dw.data(), run.db.data());
  } else {
    kernels::conv_pool_forward(g, pool, x, w, b, run.y.data(), run.winners.data());
    kernels::conv_pool_backward(g, pool, x, w, dy.data<float>(), run.winners.data(), run.dx.data(),
                                run.dw.data(), run.db.data());
  }
  return run;
}

void expect_close(const std::vector<float>& actual, const std::vector<float>& expected,
                  double tolerance, const char* what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (std::size_t i = 0; i < actual.size(); ++i)
    ASSERT_NEAR(actual[i], expected[i], tolerance * (1 + std::abs(expected[i])))
        << what << " element " << i;
}

class VectorisedGeometry
    : public ::testing::TestWithParam<std::tuple<const KernelFamily*, Geometry>> {};

TEST_P(VectorisedGeometry, MatchesPlainLoops) {
  const auto& [family, g] = GetParam();
  if (!family->built) GTEST_SKIP() << "built without " << family->name;
  ASSERT_GT(margin(g, random_inputs(g)), 1e-5) << "inputs too close to a kink or tie: change seed";
  const KernelRun fast = run_kernels(g, family), plain = run_kernels(g, nullptr);
  ASSERT_TRUE(fast.fast_forward) << "the " << family->name << " forward should cover " << g;
  ASSERT_TRUE(fast.fast_backward) << "the " << family->name << " backward should cover " << g;
  EXPECT_EQ(fast.winners, plain.winners);
  expect_close(fast.y, plain.y, 1e-5, "y");
  expect_close(fast.dx, plain.dx, 1e-5, "grad_x");
  expect_close(fast.dw, plain.dw, 1e-5, "grad_w");
  expect_close(fast.db, plain.db, 1e-5, "grad_b");
}

// A forward that saves no winners (under no_grad) pools by maxima instead of comparisons: its
// values must be the same bit for bit, ties and NaN included. A third of the image is zero, so
// windows there tie at zero sums, and one pixel is NaN, so some windows hold NaN at some slots.
TEST_P(VectorisedGeometry, ForwardWithoutWinnersGivesTheSameBits) {
  const auto& [family, geometry] = GetParam();
  if (!family->built) GTEST_SKIP() << "built without " << family->name;
  const Inputs in = random_inputs(geometry, DType::Float32);
  const float* random_x = in.x.value().data<float>();
  std::vector<float> image(random_x, random_x + in.x.value().numel());
  std::fill(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(image.size() / 3), 0.0f);
  image[image.size() / 2] = std::numeric_limits<float>::quiet_NaN();
  const float* x = image.data();
  const ConvGeometry g = conv_geometry(in.x, in.w, in.b, geometry.stride, geometry.padding);
  const kernels::PoolGeometry pool = pool_geometry(geometry, g);
  const float* w = in.w.value().data<float>();
  const float* b = geometry.bias ? in.b.value().data<float>() : nullptr;
  std::vector<float> with(outputs(g, pool), -7), without(outputs(g, pool), -7);
  std::vector<std::uint8_t> winners(outputs(g, pool));
  ASSERT_TRUE(family->forward(g, pool, x, w, b, with.data(), winners.data()));
  ASSERT_TRUE(family->forward(g, pool, x, w, b, without.data(), nullptr));
  std::size_t nans = 0;
  for (std::size_t i = 0; i < with.size(); ++i) {
    nans += std::isnan(with[i]);
    ASSERT_EQ(std::bit_cast<std::uint32_t>(without[i]), std::bit_cast<std::uint32_t>(with[i]))
        << "element " << i << ": " << without[i] << " without winners, " << with[i] << " with";
  }
  if (!geometry.relu) {
    EXPECT_GT(nans, 0u) << "the NaN should reach the output";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, VectorisedGeometry,
    ::testing::Combine(
        ::testing::Values(&kAvx512, &kAvx2),
        ::testing::Values(
            // batch, cin, h, w, cout, k, stride, padding, relu, bias, pool kernel, pool stride,
            // seed
            Geometry{3, 1, 28, 28, 6, 5, 1, 2, true, true, 2, 0, 21},      // LeNet's conv1
            Geometry{3, 6, 14, 14, 16, 5, 1, 0, true, true, 2, 0, 22},     // LeNet's conv2
            Geometry{2, 1, 28, 28, 6, 5, 1, 2, false, false, 2, 0, 23},    // no relu, no bias
            Geometry{2, 2, 13, 17, 7, 3, 1, 1, true, true, 2, 0, 24},      // odd sizes, 7 channels
            Geometry{2, 3, 9, 9, 32, 3, 1, 0, true, true, 2, 0, 25},       // 32 output channels
            Geometry{1, 4, 20, 20, 16, 5, 1, 2, true, true, 2, 0, 26},     // wider channel kernel
            Geometry{2, 2, 11, 11, 8, 3, 1, 1, true, true, 2, 0, 28},      // 8 channels, odd sizes
            Geometry{1, 1, 40, 40, 3, 3, 1, 1, true, true, 2, 0, 29},      // 3 channels, 40 wide
            Geometry{2, 3, 12, 15, 12, 3, 1, 1, true, true, 2, 0, 30},     // 8 + 4 channels
            Geometry{1, 2, 16, 23, 20, 5, 1, 2, true, false, 2, 0, 31})),  // 8 + 8 + 4, odd rows
    [](const auto& info) {
      std::string name = std::get<0>(info.param)->name;
      std::erase(name, '-');
      return name + "_" + std::to_string(info.index);
    });

TEST(VectorisedKernels, DeclineWhatTheyDoNotCover) {
  const Geometry g{1, 1, 9, 9, 2, 3, 2, 0, true, true, 2, 0, 27};  // stride 2
  for (const KernelFamily* family : {&kAvx512, &kAvx2}) {
    const KernelRun run = run_kernels(g, family);
    EXPECT_FALSE(run.fast_forward) << family->name;
    EXPECT_FALSE(run.fast_backward) << family->name;
  }
}

}  // namespace
