// The matrix products under linear, matmul and conv2d (ops/kernels/gemm.hpp), against the
// definition summed in long double: every transposition, overwrite and accumulate, sizes that are
// not multiples of any register or block width, and empty ones.
#include "ops/kernels/gemm.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "autograd/tensor.hpp"

namespace {

using ag::kernels::gemm;
using ag::kernels::gemv;

template <class T>
std::vector<T> random_values(std::int64_t n, ag::Generator& gen) {
  std::vector<T> values(static_cast<std::size_t>(n));
  for (T& v : values) v = static_cast<T>(gen.uniform(-1, 1));
  return values;
}

// C[i, j] (+)= sum_k op(A)[i, k] op(B)[k, j], with A stored [K, M] when transposed, B [N, K].
template <class T>
std::vector<T> reference(bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N,
                         std::int64_t K, const std::vector<T>& A, const std::vector<T>& B,
                         std::vector<T> C, bool accumulate) {
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      long double sum = accumulate ? C[static_cast<std::size_t>(i * N + j)] : 0;
      for (std::int64_t k = 0; k < K; ++k) {
        const T a = transpose_a ? A[static_cast<std::size_t>(k * M + i)]
                                : A[static_cast<std::size_t>(i * K + k)];
        const T b = transpose_b ? B[static_cast<std::size_t>(j * K + k)]
                                : B[static_cast<std::size_t>(k * N + j)];
        sum += static_cast<long double>(a) * b;
      }
      C[static_cast<std::size_t>(i * N + j)] = static_cast<T>(sum);
    }
  return C;
}

// `tolerance` is relative (to 1 + |expected|): a wrong index or transposition is off by O(1).
template <class T>
void expect_gemm_matches_reference(T tolerance) {
  ag::Generator gen(5);
  struct Size {
    std::int64_t M, N, K;
  };
  // LeNet's products (fc1 at batch 100, conv2's im2col), odd sizes, one row, and empty ones.
  const Size sizes[] = {{100, 120, 400}, {16, 100, 150}, {7, 13, 33}, {1, 84, 120},
                        {37, 1, 5},      {3, 4, 0},      {0, 5, 3}};
  for (const Size& s : sizes)
    for (bool transpose_a : {false, true})
      for (bool transpose_b : {false, true})
        for (bool accumulate : {false, true}) {
          const auto A = random_values<T>(s.M * s.K, gen), B = random_values<T>(s.K * s.N, gen);
          std::vector<T> C = random_values<T>(s.M * s.N, gen);
          const auto expected =
              reference(transpose_a, transpose_b, s.M, s.N, s.K, A, B, C, accumulate);
          gemm<T>(transpose_a, transpose_b, s.M, s.N, s.K, A.data(), B.data(), accumulate,
                  C.data());
          for (std::size_t e = 0; e < C.size(); ++e)
            ASSERT_NEAR(C[e], expected[e], tolerance * (1 + std::abs(expected[e])))
                << "M " << s.M << " N " << s.N << " K " << s.K << " transpose_a " << transpose_a
                << " transpose_b " << transpose_b << " accumulate " << accumulate << " element "
                << e;
        }
}

TEST(Gemm, Float64MatchesTheDefinitionForEveryTranspositionAndMode) {
  expect_gemm_matches_reference<double>(1e-12);
}

TEST(Gemm, Float32MatchesTheDefinitionForEveryTranspositionAndMode) {
  expect_gemm_matches_reference<float>(1e-5f);
}

TEST(Gemm, EmptyInnerDimensionGivesZerosOrLeavesTheSum) {
  std::vector<double> C = {1, 2, 3, 4};
  gemm<double>(false, false, 2, 2, 0, nullptr, nullptr, /*accumulate=*/true, C.data());
  EXPECT_EQ(C, (std::vector<double>{1, 2, 3, 4}));
  gemm<double>(false, false, 2, 2, 0, nullptr, nullptr, /*accumulate=*/false, C.data());
  EXPECT_EQ(C, (std::vector<double>{0, 0, 0, 0}));
}

TEST(Gemv, MatchesTheDefinitionOverwritingAndAccumulating) {
  ag::Generator gen(6);
  for (bool accumulate : {false, true}) {
    const std::int64_t M = 84, N = 121;
    const auto A = random_values<double>(M * N, gen), x = random_values<double>(N, gen);
    std::vector<double> y = random_values<double>(M, gen);
    const auto expected = reference(false, false, M, 1, N, A, x, y, accumulate);
    gemv<double>(M, N, A.data(), x.data(), accumulate, y.data());
    for (std::size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], expected[i], 1e-12) << "row " << i;
  }
}

}  // namespace
