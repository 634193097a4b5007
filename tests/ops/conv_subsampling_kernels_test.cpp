// The direct convolution kernels (ops/fusion/conv_subsampling.hpp): the plain loops against conv2d in
// float64, and each vectorised family (AVX-512, AVX2, both layouts) in float32 against the plain
// loops run in float64 on the same values, over geometries that exercise its blocks' edges; which
// kernels cover what. The lanes kernels (a block of images at once, with connection tables) against
// the plain loops and loops written out.
#include "ops/fusion/conv_subsampling.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "ops/conv2d.hpp"
#include "ops/pool.hpp"
#include "ops/fusion/fusion.hpp"
#include "tests/ops/op_testing.hpp"

using namespace ag;
using namespace ag::kernels;

namespace {

struct Geometry {
  std::int64_t batch, in_channels, height, width, out_channels, kernel_h, kernel_w, padding;
  std::uint64_t seed;
};

std::ostream& operator<<(std::ostream& out, const Geometry& g) {
  return out << "x[" << g.batch << "," << g.in_channels << "," << g.height << "," << g.width
             << "] w[" << g.out_channels << "," << g.in_channels << "," << g.kernel_h << ","
             << g.kernel_w << "] padding " << g.padding;
}

struct Inputs {
  Tensor x, w, b, dz;  // dz of the convolution's output shape
  ConvGeometry g;
};

Inputs random_inputs(const Geometry& geometry, DType dtype) {
  Generator gen(geometry.seed);
  Inputs in;
  in.x = Tensor::uniform({geometry.batch, geometry.in_channels, geometry.height, geometry.width},
                         -1, 1, gen, dtype);
  in.w = Tensor::uniform(
      {geometry.out_channels, geometry.in_channels, geometry.kernel_h, geometry.kernel_w}, -0.5,
      0.5, gen, dtype);
  in.b = Tensor::uniform({geometry.out_channels}, -0.5, 0.5, gen, dtype);
  in.g = conv_geometry(Variable(in.x), Variable(in.w), Variable(in.b), 1, geometry.padding);
  in.dz = Tensor::uniform({in.g.batch, in.g.out_channels, in.g.out_h, in.g.out_w}, -1, 1, gen,
                          dtype);
  return in;
}

struct Results {
  Tensor z, dw, dx;
  Isa isa = Isa::Plain;
};

// Forward, grad_w and grad_x of every image by the kernels direct_convolution picks.
template <class T>
Results run(const Inputs& in) {
  const ConvGeometry& g = in.g;
  Results r{Tensor(in.dz.shape(), in.x.dtype()), Tensor(in.w.shape(), in.x.dtype()),
            Tensor(in.x.shape(), in.x.dtype())};
  const auto convolution = direct_convolution<T>(g, in.w.data<T>());
  r.isa = convolution->isa();
  const std::int64_t outputs = g.out_channels * g.out_h * g.out_w;
  for (std::int64_t n = 0; n < g.batch; ++n) {
    convolution->forward(in.x.data<T>() + n * g.image_size(), in.b.data<T>(),
                         r.z.data<T>() + n * outputs);
    convolution->add_grad_w(in.x.data<T>() + n * g.image_size(), in.dz.data<T>() + n * outputs);
    convolution->grad_x(in.dz.data<T>() + n * outputs, r.dx.data<T>() + n * g.image_size());
  }
  convolution->finish_grad_w(r.dw.data<T>());
  return r;
}

void expect_close(const Tensor& actual, const Tensor& expected, double tolerance,
                  const char* what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], e[i], tolerance * (1 + std::abs(e[i]))) << what << " element " << i;
}

const std::vector<Geometry> kGeometries = {
    // batch, cin, h, w, cout, kh, kw, padding, seed
    {3, 1, 32, 32, 6, 5, 5, 0, 1},    // the 1998 LeNet-5's C1: by width
    {3, 6, 14, 14, 16, 5, 5, 0, 2},   // its C3: by channel
    {2, 1, 28, 28, 6, 5, 5, 2, 3},    // padded
    {2, 2, 13, 17, 7, 3, 3, 1, 4},    // odd sizes, 7 channels
    {2, 3, 9, 9, 32, 3, 3, 0, 5},     // two blocks of 16 channels
    {1, 4, 20, 20, 16, 5, 5, 2, 6},   // by channel, padded
    {2, 2, 11, 40, 3, 3, 3, 1, 7},    // by width, 40 columns: a second tile
    {1, 3, 12, 15, 16, 3, 5, 1, 8},   // by channel, kernel 3 x 5
    {2, 2, 7, 7, 5, 7, 7, 3, 9},      // kernel 7 covering the image
    {1, 2, 10, 21, 16, 2, 8, 0, 10},  // kernel 8 wide, 2 rows, 14 output columns
    {2, 3, 5, 5, 9, 5, 5, 0, 11},     // one output position
};

TEST(DirectConvolution, PlainLoopsMatchConv2dInFloat64) {
  for (const Geometry& geometry : kGeometries) {
    SCOPED_TRACE(::testing::Message() << geometry);
    const Inputs in = random_inputs(geometry, DType::Float64);
    const Results r = run<double>(in);
    EXPECT_EQ(r.isa, Isa::Plain);
    NoFusionGuard unfused;
    const Variable x(in.x, true), w(in.w, true), b(in.b);
    const Variable z = conv2d(x, w, b, 1, geometry.padding);
    z.backward(in.dz);
    expect_close(r.z, z.value(), 1e-13, "z");
    expect_close(r.dw, w.grad(), 1e-13, "dw");
    expect_close(r.dx, x.grad(), 1e-13, "dx");
  }
}

class DirectConvVectorised : public ::testing::TestWithParam<std::tuple<Isa, Geometry>> {};

TEST_P(DirectConvVectorised, MatchesPlainLoops) {
  const auto& [isa, geometry] = GetParam();
  if (widest_isa() < isa) GTEST_SKIP() << "built without " << isa_name(isa);
  const Inputs in = random_inputs(geometry, DType::Float32);
  Results fast;
  {
    IsaLimit limit(isa);
    fast = run<float>(in);
  }
  // The reference: the same float32 values, summed in float64 (a float32 sum of the 2,352 terms
  // of a C1 weight's gradient is itself off by 1e-5).
  Inputs exact = in;
  for (Tensor* t : {&exact.x, &exact.w, &exact.b, &exact.dz}) *t = t->to(DType::Float64);
  const Results plain = run<double>(exact);
  ASSERT_EQ(fast.isa, isa) << "the " << isa_name(isa) << " kernels should cover " << geometry;
  expect_close(fast.z, plain.z, 1e-5, "z");
  expect_close(fast.dw, plain.dw, 1e-5, "dw");
  expect_close(fast.dx, plain.dx, 1e-5, "dx");
}

INSTANTIATE_TEST_SUITE_P(Shapes, DirectConvVectorised,
                         ::testing::Combine(::testing::Values(Isa::Avx512, Isa::Avx2),
                                            ::testing::ValuesIn(kGeometries)),
                         [](const auto& info) {
                           std::string name = isa_name(std::get<0>(info.param));
                           std::erase(name, '-');
                           return name + "_" + std::to_string(info.index);
                         });

TEST(DirectConvolution, VectorisedKernelsDeclineWhatTheyDoNotCover) {
  const Inputs strided = random_inputs({1, 2, 9, 9, 4, 3, 3, 0, 12}, DType::Float32);
  ConvGeometry g = strided.g;
  g.stride = 2;
  EXPECT_EQ(direct_convolution_avx512(g, strided.w.data<float>()), nullptr);
  EXPECT_EQ(direct_convolution_avx2(g, strided.w.data<float>()), nullptr);
  const Inputs wide = random_inputs({1, 1, 12, 12, 4, 3, 9, 0, 13}, DType::Float32);
  EXPECT_EQ(direct_convolution_avx2(wide.g, wide.w.data<float>()), nullptr);
  // By width, grad_x needs a square kernel; without weights (grad_w only) any kernel is covered.
  const Inputs oblong = random_inputs({1, 1, 12, 12, 4, 3, 5, 0, 14}, DType::Float32);
  EXPECT_EQ(direct_convolution_avx2(oblong.g, oblong.w.data<float>()), nullptr);
  if (widest_isa() >= Isa::Avx2) {
    EXPECT_NE(direct_convolution_avx2(oblong.g, nullptr), nullptr);
  }
}

TEST(DirectConvolution, IsaLimitLowersTheChoiceAndRestoresIt) {
  const Inputs in = random_inputs(kGeometries[1], DType::Float32);
  const Isa widest = widest_isa();
  {
    IsaLimit limit(Isa::Plain);
    EXPECT_EQ(widest_isa(), Isa::Plain);
    EXPECT_EQ(direct_convolution<float>(in.g, in.w.data<float>())->isa(), Isa::Plain);
  }
  EXPECT_EQ(widest_isa(), widest);
  EXPECT_EQ(direct_convolution<float>(in.g, in.w.data<float>())->isa(), widest);
}

// ---- Images in lanes ----

struct LanesCase {
  Geometry geometry;
  bool table;  // a connection table that leaves pairs out, or every pair
};

std::ostream& operator<<(std::ostream& out, const LanesCase& c) {
  return out << c.geometry << (c.table ? " with a connection table" : "");
}

// Leaves out about a third of the pairs; every output channel reads at least one input.
ConnectionTable table_of(const ConvGeometry& g) {
  std::vector<bool> connected;
  for (std::int64_t o = 0; o < g.out_channels; ++o)
    for (std::int64_t c = 0; c < g.in_channels; ++c)
      connected.push_back(c == o % g.in_channels || (o * 7 + c * 3) % 5 < 3);
  return ConnectionTable(g.out_channels, g.in_channels, std::move(connected));
}

class LaneConvolutions : public ::testing::TestWithParam<std::tuple<Isa, LanesCase>> {};

// Each block of images through to_lanes, forward, subsample, subsample_adjoint (with the scaled
// tanh's slope, and its square), add_grad_w, grad_x and to_images, against the plain loops in
// float64 on the same float32 values, the weights off the table zeroed, and loops written out for
// the subsampling.
TEST_P(LaneConvolutions, MatchPlainLoopsAndTheTable) {
  const auto& [isa, lanes_case] = GetParam();
  if (widest_isa() < isa) GTEST_SKIP() << "built without " << isa_name(isa);
  const Inputs in = random_inputs(lanes_case.geometry, DType::Float32);
  const ConvGeometry& g = in.g;
  const ConnectionTable table = lanes_case.table ? table_of(g) : ConnectionTable{};
  const auto lanes = lane_convolution(isa, g, in.w.data<float>(), table);
  ASSERT_NE(lanes, nullptr);
  ASSERT_EQ(lanes->isa(), isa);
  const std::int64_t L = lanes->lanes(), Ph = g.out_h / 2, Pw = g.out_w / 2;
  const std::int64_t outputs = g.out_channels * g.out_h * g.out_w, pooled = g.out_channels * Ph * Pw;
  Generator gen(77);
  const Tensor pool_weight = Tensor::uniform({g.out_channels}, -1.5, 1.5, gen);
  const Tensor pool_bias = Tensor::uniform({g.out_channels}, -0.5, 0.5, gen);
  const Tensor t = Tensor::uniform({g.batch, g.out_channels, Ph, Pw}, -1, 1, gen);
  const SlopeOfScaledTanh slope{.ratio = 0.4f, .square = 2.9f};
  const auto at = [](const Tensor& v, std::int64_t k) { return static_cast<double>(v.data<float>()[k]); };

  for (const bool squared : {false, true}) {
    SCOPED_TRACE(squared ? "squared" : "not squared");
    const DType f32 = DType::Float32;
    Tensor z({g.batch, g.out_channels, g.out_h, g.out_w}, f32), y({g.batch, g.out_channels, Ph, Pw}, f32);
    Tensor dx(in.x.shape(), f32), dw(in.w.shape(), f32);
    Tensor grad_b({g.out_channels}, f32), grad_weight({g.out_channels}, f32),
        grad_bias({g.out_channels}, f32);
    std::vector<float> x_lanes(static_cast<std::size_t>(g.image_size() * L));
    std::vector<float> z_lanes(static_cast<std::size_t>(outputs * L));
    std::vector<float> y_lanes(static_cast<std::size_t>(pooled * L)), t_lanes(y_lanes.size());
    const auto fresh = lane_convolution(isa, g, in.w.data<float>(), table);
    for (std::int64_t n0 = 0; n0 < g.batch; n0 += L) {
      const std::int64_t count = std::min(L, g.batch - n0);
      fresh->to_lanes(in.x.data<float>() + n0 * g.image_size(), count, g.image_size(), x_lanes.data());
      fresh->forward(x_lanes.data(), in.b.data<float>(), z_lanes.data());
      fresh->to_images(z_lanes.data(), count, outputs, z.data<float>() + n0 * outputs);
      // The subsampling reads z as if it were the scaled tanh a.
      fresh->subsample(z_lanes.data(), pool_weight.data<float>(), pool_bias.data<float>(), y_lanes.data());
      fresh->to_images(y_lanes.data(), count, pooled, y.data<float>() + n0 * pooled);
      fresh->to_lanes(t.data<float>() + n0 * pooled, count, pooled, t_lanes.data());
      fresh->subsample_adjoint(t_lanes.data(), z_lanes.data(), pool_weight.data<float>(), slope,
                               squared, grad_b.data<float>(), grad_weight.data<float>(),
                               grad_bias.data<float>());
      fresh->add_grad_w(x_lanes.data());
      fresh->grad_x(x_lanes.data());
      fresh->to_images(x_lanes.data(), count, g.image_size(), dx.data<float>() + n0 * g.image_size());
    }
    fresh->finish_grad_w(dw.data<float>());

    // The reference: the weights off the table zeroed, dz written out from z, all in float64.
    Inputs exact = in;
    for (Tensor* v : {&exact.x, &exact.w, &exact.b}) *v = v->to(DType::Float64);
    table.zero_unconnected(exact.w);
    exact.dz = Tensor(in.dz.shape(), DType::Float64);
    double* dz = exact.dz.data<double>();
    Tensor expected_y({g.batch, g.out_channels, Ph, Pw}, DType::Float64);
    std::vector<double> sum_dz(g.out_channels), sum_t_window(g.out_channels), sum_t(g.out_channels);
    for (std::int64_t n = 0; n < g.batch; ++n)
      for (std::int64_t o = 0; o < g.out_channels; ++o)
        for (std::int64_t i = 0; i < Ph; ++i)
          for (std::int64_t j = 0; j < Pw; ++j) {
            const std::int64_t k = ((n * g.out_channels + o) * Ph + i) * Pw + j;
            double window = 0;
            for (std::int64_t p = 0; p < 2; ++p)
              for (std::int64_t q = 0; q < 2; ++q)
                window += at(z, ((n * g.out_channels + o) * g.out_h + 2 * i + p) * g.out_w + 2 * j + q);
            expected_y.data<double>()[k] = at(pool_weight, o) * window + at(pool_bias, o);
            sum_t[o] += at(t, k);
            sum_t_window[o] += at(t, k) * (squared ? window * window : window);
            for (std::int64_t p = 0; p < 2; ++p)
              for (std::int64_t q = 0; q < 2; ++q) {
                const std::int64_t e = ((n * g.out_channels + o) * g.out_h + 2 * i + p) * g.out_w + 2 * j + q;
                double d = slope.ratio * (slope.square - at(z, e) * at(z, e));
                if (squared) d *= d;
                dz[e] = at(t, k) * at(pool_weight, o) * d;
                sum_dz[o] += dz[e];
              }
          }
    Results plain = run<double>(exact);
    table.zero_unconnected(plain.dw);  // the table's definition of dw
    // Within float32's rounding of the terms, which under the squared slope reach 10-100 times the
    // sums they cancel into: relative to the largest expected value.
    const auto expect_within = [](const Tensor& actual, const Tensor& expected, const char* what) {
      const std::vector<double> e = expected.to_vector();
      double largest = 1;
      for (const double v : e) largest = std::max(largest, std::abs(v));
      expect_close(actual, expected, 1e-5 * largest, what);
    };
    expect_within(z, plain.z, "z");
    expect_within(y, expected_y, "y");
    expect_within(dw, plain.dw, "dw");
    expect_within(dx, plain.dx, "dx");
    for (std::int64_t o = 0; o < g.out_channels; ++o) {
      EXPECT_NEAR(at(grad_b, o), sum_dz[o], 1e-4 * (1 + std::abs(sum_dz[o]))) << o;
      EXPECT_NEAR(at(grad_weight, o), sum_t_window[o], 1e-4 * (1 + std::abs(sum_t_window[o]))) << o;
      EXPECT_NEAR(at(grad_bias, o), sum_t[o], 1e-4 * (1 + std::abs(sum_t[o]))) << o;
      for (std::int64_t c = 0; c < g.in_channels; ++c) {
        if (table.connects(o, c)) continue;
        for (std::int64_t k = 0; k < g.kernel_h * g.kernel_w; ++k) {
          ASSERT_EQ(dw.data<float>()[(o * g.in_channels + c) * g.kernel_h * g.kernel_w + k], 0.0f)
              << "dw off the table, " << o << " " << c;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LaneConvolutions,
    ::testing::Combine(
        ::testing::Values(Isa::Avx512, Isa::Avx2),
        ::testing::Values(
            // batch, cin, h, w, cout, kh, kw, padding, seed
            LanesCase{{19, 1, 32, 32, 6, 5, 5, 0, 31}, false},   // C1: a block and 3 images
            LanesCase{{19, 6, 14, 14, 16, 5, 5, 0, 32}, true},   // C3 with its kind of table
            LanesCase{{16, 6, 14, 14, 16, 5, 5, 0, 33}, false},  // C3, every pair; one full block
            LanesCase{{9, 2, 10, 12, 5, 3, 3, 0, 34}, true},     // 3x3, odd channel counts
            LanesCase{{5, 2, 9, 17, 3, 2, 8, 0, 35}, true},      // kernel 8 wide, 2 rows
            LanesCase{{3, 2, 6, 40, 3, 3, 3, 0, 36}, false})),   // 38 columns: several row blocks
    [](const auto& info) {
      std::string name = isa_name(std::get<0>(info.param));
      std::erase(name, '-');
      return name + "_" + std::to_string(info.index);
    });

TEST(LaneConvolutions, DeclineWhatTheyDoNotCover) {
  const Inputs padded = random_inputs({1, 2, 10, 10, 4, 3, 3, 1, 37}, DType::Float32);
  EXPECT_EQ(lane_convolution(Isa::Avx512, padded.g, padded.w.data<float>(), {}), nullptr);
  const Inputs odd = random_inputs({1, 2, 9, 10, 4, 3, 3, 0, 38}, DType::Float32);  // 7 rows out
  EXPECT_EQ(lane_convolution(Isa::Avx512, odd.g, odd.w.data<float>(), {}), nullptr);
  EXPECT_EQ(lane_convolution(Isa::Plain, padded.g, padded.w.data<float>(), {}), nullptr);
}

// ---- The 2x2 subsampling steps ----

struct Planes {
  std::int64_t channels, height, width;
};

class Subsampling2x2 : public ::testing::TestWithParam<std::tuple<Isa, Planes>> {};

TEST_P(Subsampling2x2, ForwardAndAdjointMatchLoopsWrittenOut) {
  const auto& [isa, planes] = GetParam();
  if (widest_isa() < isa) GTEST_SKIP() << "built without " << isa_name(isa);
  const auto [C, H, W] = planes;
  const std::int64_t Ph = H / 2, Pw = W / 2;
  Generator gen(static_cast<std::uint64_t>(C * H * W));
  const Tensor a = Tensor::uniform({C, H, W}, -1.7, 1.7, gen);
  const Tensor weight = Tensor::uniform({C}, -2, 2, gen), bias = Tensor::uniform({C}, -1, 1, gen);
  const Tensor t = Tensor::uniform({C, Ph, Pw}, -1, 1, gen);
  const SlopeOfScaledTanh slope{.ratio = 0.4f, .square = 2.9f};
  const auto at = [](const Tensor& v, std::int64_t k) { return static_cast<double>(v.data<float>()[k]); };
  for (const bool squared : {false, true}) {
    SCOPED_TRACE(squared ? "squared" : "not squared");
    std::vector<float> y(static_cast<std::size_t>(C * Ph * Pw), -7.0f);
    std::vector<float> dz(static_cast<std::size_t>(C * H * W), -7.0f);
    std::vector<float> grad_b(C, 0.5f), grad_weight(C, 0.5f), grad_bias(C, 0.5f);
    ASSERT_TRUE(subsample_2x2(isa, C, H, W, a.data<float>(), weight.data<float>(),
                              bias.data<float>(), y.data()));
    ASSERT_TRUE(subsample_2x2_adjoint(isa, C, H, W, t.data<float>(), a.data<float>(),
                                      weight.data<float>(), slope, squared, dz.data(),
                                      grad_b.data(), grad_weight.data(), grad_bias.data()));
    for (std::int64_t c = 0; c < C; ++c) {
      double sum_dz = 0, sum_t_window = 0, sum_t = 0;
      for (std::int64_t i = 0; i < Ph; ++i)
        for (std::int64_t j = 0; j < Pw; ++j) {
          double window = 0;
          for (std::int64_t p = 0; p < 2; ++p)
            for (std::int64_t q = 0; q < 2; ++q) window += at(a, (c * H + 2 * i + p) * W + 2 * j + q);
          const std::int64_t k = (c * Ph + i) * Pw + j;
          ASSERT_NEAR(y[static_cast<std::size_t>(k)], at(weight, c) * window + at(bias, c), 1e-5)
              << "y " << k;
          sum_t += at(t, k);
          sum_t_window += at(t, k) * (squared ? window * window : window);
          for (std::int64_t p = 0; p < 2; ++p)
            for (std::int64_t q = 0; q < 2; ++q) {
              const std::int64_t e = (c * H + 2 * i + p) * W + 2 * j + q;
              double d = slope.ratio * (slope.square - at(a, e) * at(a, e));
              if (squared) d *= d;
              const double expected = at(t, k) * at(weight, c) * d;
              sum_dz += expected;
              ASSERT_NEAR(dz[static_cast<std::size_t>(e)], expected, 1e-5) << "dz " << e;
            }
        }
      EXPECT_NEAR(grad_b[static_cast<std::size_t>(c)], 0.5 + sum_dz, 1e-4) << c;
      EXPECT_NEAR(grad_weight[static_cast<std::size_t>(c)], 0.5 + sum_t_window, 1e-4) << c;
      EXPECT_NEAR(grad_bias[static_cast<std::size_t>(c)], 0.5 + sum_t, 1e-4) << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Subsampling2x2,
                         ::testing::Combine(::testing::Values(Isa::Avx512, Isa::Avx2),
                                            ::testing::Values(Planes{6, 28, 28}, Planes{16, 10, 10},
                                                              Planes{3, 2, 2}, Planes{2, 4, 34},
                                                              Planes{1, 6, 64}, Planes{2, 2, 18})),
                         [](const auto& info) {
                           std::string name = isa_name(std::get<0>(info.param));
                           std::erase(name, '-');
                           return name + "_" + std::to_string(info.index);
                         });

TEST(Subsampling2x2, DeclinesThePlainInstructionSet) {
  float a[4] = {1, 2, 3, 4}, weight[1] = {1}, y[1];
  EXPECT_FALSE(subsample_2x2(Isa::Plain, 1, 2, 2, a, weight, nullptr, y));
  IsaLimit limit(Isa::Plain);
  EXPECT_FALSE(subsample_2x2(Isa::Avx512, 1, 2, 2, a, weight, nullptr, y));
}

}  // namespace
