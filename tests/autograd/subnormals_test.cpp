// FlushSubnormalsGuard: subnormal results and inputs become zero on the guarded thread and on the
// threads it starts, and only while the guard lives.
#include "autograd/subnormals.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

namespace {

#if defined(__x86_64__) || defined(__i386__)
constexpr bool kHasFlushModes = true;
#else
constexpr bool kHasFlushModes = false;
#endif

// volatile: the compiler must not fold these at compile time, where the CPU's mode does not apply.
float product(float a, float b) {
  volatile float x = a, y = b;
  return x * y;
}
double product(double a, double b) {
  volatile double x = a, y = b;
  return x * y;
}

TEST(FlushSubnormals, GuardFlushesResultsAndInputsAndRestoresTheMode) {
  if (!kHasFlushModes) GTEST_SKIP() << "flush-to-zero modes are x86's";
  const float subnormal = 1e-40f;  // below float's smallest normal, 1.2e-38
  ASSERT_EQ(std::fpclassify(product(1e-20f, 1e-20f)), FP_SUBNORMAL)
      << "the default mode keeps subnormals";
  {
    ag::FlushSubnormalsGuard guard;
    EXPECT_EQ(product(1e-20f, 1e-20f), 0.0f) << "a subnormal result is flushed (FTZ)";
    EXPECT_EQ(product(1e-200, 1e-200), 0.0) << "in double too";
    // 1e-40 * 1024 is a normal number: only reading the input as zero (DAZ) makes it 0.
    EXPECT_EQ(product(subnormal, 1024.0f), 0.0f) << "a subnormal input reads as zero (DAZ)";
    EXPECT_EQ(product(1e-19f, 1e-19f), 1e-19f * 1e-19f) << "normal numbers are untouched";
    float in_thread = -1;
    std::thread([&] { in_thread = product(1e-20f, 1e-20f); }).join();
    EXPECT_EQ(in_thread, 0.0f) << "a thread started under the guard inherits the mode";
  }
  EXPECT_EQ(std::fpclassify(product(1e-20f, 1e-20f)), FP_SUBNORMAL) << "the mode is restored";
  EXPECT_GT(product(subnormal, 1024.0f), 0.0f);
}

TEST(FlushSubnormals, GuardsNest) {
  if (!kHasFlushModes) GTEST_SKIP() << "flush-to-zero modes are x86's";
  ag::FlushSubnormalsGuard outer;
  { ag::FlushSubnormalsGuard inner; }
  EXPECT_EQ(product(1e-20f, 1e-20f), 0.0f) << "the inner guard restores the outer one's mode";
}

}  // namespace
