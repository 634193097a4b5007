// gemm and gemv on Eigen's matrix products, through maps of the callers' row-major buffers.
#include "ops/kernels/gemm.hpp"

// GCC 12 reports the deliberately undefined operand inside several AVX-512 intrinsics
// (_mm512_undefined_*), which Eigen's packing routines use, as "may be used uninitialized" (GCC bug
// 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <Eigen/Core>

namespace ag::kernels {

namespace {

template <class T>
using RowMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMajorMatrix<T>>;
template <class T>
using MatrixMap = Eigen::Map<RowMajorMatrix<T>>;

template <class Result, class Lhs, class Rhs>
void assign_product(Result&& c, const Lhs& a, const Rhs& b, bool accumulate) {
  if (accumulate)
    c.noalias() += a * b;
  else
    c.noalias() = a * b;
}

}  // namespace

template <class T>
void gemm(bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N, std::int64_t K,
          const T* A, const T* B, bool accumulate, T* C) {
  MatrixMap<T> c(C, M, N);
  const ConstMatrixMap<T> a(A, transpose_a ? K : M, transpose_a ? M : K);
  const ConstMatrixMap<T> b(B, transpose_b ? N : K, transpose_b ? K : N);
  // Each combination is its own product type for Eigen; a transpose is a view, not a copy.
  if (transpose_a && transpose_b)
    assign_product(c, a.transpose(), b.transpose(), accumulate);
  else if (transpose_a)
    assign_product(c, a.transpose(), b, accumulate);
  else if (transpose_b)
    assign_product(c, a, b.transpose(), accumulate);
  else
    assign_product(c, a, b, accumulate);
}

template <class T>
void gemv(std::int64_t M, std::int64_t N, const T* A, const T* x, bool accumulate, T* y) {
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> out(y, M);
  const Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>> in(x, N);
  assign_product(out, ConstMatrixMap<T>(A, M, N), in, accumulate);
}

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*,
                          const float*, bool, float*);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, const double*,
                           const double*, bool, double*);
template void gemv<float>(std::int64_t, std::int64_t, const float*, const float*, bool, float*);
template void gemv<double>(std::int64_t, std::int64_t, const double*, const double*, bool, double*);

}  // namespace ag::kernels
