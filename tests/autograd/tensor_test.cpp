// Tensor: construction, shapes, dtypes, reshape views, version counters and the seeded generator.
#include "autograd/tensor.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace ag;

TEST(Tensor, ZerosHasShapeAndCount) {
  Tensor t({2, 3, 4}, DType::Float64);
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.dtype(), DType::Float64);
  for (double v : t.to_vector()) EXPECT_EQ(v, 0.0);
}

TEST(Tensor, FromKeepsRowMajorOrder) {
  Tensor t = Tensor::from({2, 2}, std::vector<double>{1, 2, 3, 4});
  EXPECT_EQ(t.at(1), 2.0);
  EXPECT_EQ(t.at(2), 3.0);
  EXPECT_EQ(t.data<float>()[3], 4.0f);
}

TEST(Tensor, FromRejectsWrongValueCount) {
  EXPECT_THROW(Tensor::from({2, 2}, std::vector<double>{1, 2, 3}), std::invalid_argument);
}

TEST(Tensor, DataWithWrongTypeThrows) {
  Tensor t({2}, DType::Float32);
  EXPECT_THROW(t.data<double>(), std::invalid_argument);
}

TEST(Tensor, ReshapeSharesStorageAndInfersMinusOne) {
  Tensor t = Tensor::from({2, 3}, std::vector<double>{0, 1, 2, 3, 4, 5});
  Tensor r = t.reshape({3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  r.set(0, 42);
  EXPECT_EQ(t.at(0), 42.0);
}

TEST(Tensor, ReshapeMismatchNamesBothShapes) {
  Tensor t({2, 3});
  try {
    t.reshape({4, 2});
    FAIL() << "expected a throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "reshape: cannot reshape [2, 3] to [4, 2]");
  }
}

TEST(Tensor, NegativeDimensionIsRejected) {
  EXPECT_THROW(Tensor({2, -1}), std::invalid_argument);
}

TEST(Tensor, ElementCountOverflowIsRejected) {
  // 2^32 x 2^32 elements overflow a 64-bit count: rejected before any allocation.
  try {
    Tensor::empty({std::int64_t(1) << 32, std::int64_t(1) << 32});
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "shape: element count overflows in [4294967296, 4294967296]");
  }
  EXPECT_EQ(Tensor::empty({std::int64_t(1) << 31, 0, std::int64_t(1) << 40}).numel(), 0);
}

TEST(Tensor, CloneIsIndependent) {
  Tensor t = Tensor::ones({3});
  Tensor c = t.clone();
  c.set(0, 5);
  EXPECT_EQ(t.at(0), 1.0);
}

TEST(Tensor, ConvertsBetweenDtypes) {
  Tensor t = Tensor::from({2}, std::vector<double>{0.5, -1.25}, DType::Float64);
  Tensor f = t.to(DType::Float32);
  EXPECT_EQ(f.dtype(), DType::Float32);
  EXPECT_EQ(f.at(1), -1.25);
}

TEST(Tensor, AddInPlaceChecksShapes) {
  Tensor a = Tensor::ones({2});
  a.add_(Tensor::full({2}, 2.0));
  EXPECT_EQ(a.at(1), 3.0);
  EXPECT_THROW(a.add_(Tensor::ones({3})), std::invalid_argument);
}

// ---- Version counters ----

TEST(TensorVersion, NewTensorsStartAtVersionZero) {
  Generator gen(1);
  EXPECT_EQ(Tensor({2}).version(), 0u);
  EXPECT_EQ(Tensor::empty({2}).version(), 0u);
  EXPECT_EQ(Tensor::full({2}, 3.0).version(), 0u);  // filled as it is made, not in place
  EXPECT_EQ(Tensor::ones({2}).version(), 0u);
  EXPECT_EQ(Tensor::from({2}, std::vector<double>{1, 2}).version(), 0u);
  EXPECT_EQ(Tensor::uniform({2}, 0, 1, gen).version(), 0u);
  EXPECT_EQ(Tensor().version(), 0u);
}

TEST(TensorVersion, EveryInPlaceWriteBumpsIt) {
  Tensor t = Tensor::zeros({3}, DType::Float64);
  t.fill(1.0);
  EXPECT_EQ(t.version(), 1u);
  t.set(2, 5.0);
  EXPECT_EQ(t.version(), 2u);
  t.add_(Tensor::ones({3}, DType::Float64));
  EXPECT_EQ(t.version(), 3u);
  t.bump_version();
  EXPECT_EQ(t.version(), 4u);
}

TEST(TensorVersion, ReadsAndDataPointersDoNotBumpIt) {
  // Kernels write fresh outputs through data<T>(), and a non-const handle is no write.
  Tensor t = Tensor::ones({3}, DType::Float64);
  t.data<double>()[0] = 2.0;
  (void)t.raw_data();
  (void)t.at(1);
  (void)t.to_vector();
  (void)t.clone();
  (void)t.reshape({3, 1});
  Tensor copy = t;
  EXPECT_EQ(t.version(), 0u);
}

TEST(TensorVersion, CopiesAndReshapeViewsShareTheCounter) {
  Tensor t = Tensor::zeros({2, 3}, DType::Float64);
  Tensor view = t.reshape({6});
  Tensor copy = t;
  view.fill(1.0);  // a write through the view is a write to t
  EXPECT_EQ(t.version(), 1u);
  t.set(0, 2.0);
  EXPECT_EQ(view.version(), 2u);
  EXPECT_EQ(copy.version(), 2u);
}

TEST(TensorVersion, CloneHasItsOwnCounter) {
  Tensor t = Tensor::zeros({2}, DType::Float64);
  t.fill(1.0);
  Tensor c = t.clone();
  EXPECT_EQ(c.version(), 0u);
  c.fill(2.0);
  EXPECT_EQ(t.version(), 1u);
}

TEST(TensorVersion, BumpsFromSeveralThreadsAreAllCounted) {
  // Data-parallel replicas share parameter storage across threads.
  Tensor t = Tensor::zeros({1});
  constexpr int kBumps = 200000;
  std::thread other([view = t]() mutable {
    for (int i = 0; i < kBumps; ++i) view.bump_version();
  });
  for (int i = 0; i < kBumps; ++i) t.bump_version();
  other.join();
  EXPECT_EQ(t.version(), 2u * kBumps);
}

TEST(Generator, SameSeedSameNumbers) {
  Generator a(7), b(7), c(8);
  Tensor x = Tensor::normal({100}, 0, 1, a), y = Tensor::normal({100}, 0, 1, b),
         z = Tensor::normal({100}, 0, 1, c);
  EXPECT_EQ(x.to_vector(), y.to_vector());
  EXPECT_NE(x.to_vector(), z.to_vector());
}

TEST(Generator, UniformStaysInRangeAndStateRoundTrips) {
  Generator g(1);
  for (int i = 0; i < 1000; ++i) {
    double u = g.uniform(-2, 3);
    EXPECT_GE(u, -2);
    EXPECT_LT(u, 3);
  }
  std::string state = g.state();
  std::uint64_t expected = g.next();
  Generator h(99);
  h.set_state(state);
  EXPECT_EQ(h.next(), expected);
}

TEST(Generator, NormalHasUnitMoments) {
  Generator g(3);
  Tensor x = Tensor::normal({20000}, 0, 1, g, DType::Float64);
  double mean = 0, var = 0;
  for (double v : x.to_vector()) mean += v;
  mean /= 20000;
  for (double v : x.to_vector()) var += (v - mean) * (v - mean);
  var /= 20000;
  EXPECT_NEAR(mean, 0.0, 0.03);
  EXPECT_NEAR(var, 1.0, 0.05);
}
