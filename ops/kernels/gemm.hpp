// Matrix products for the ops (linear, matmul, conv2d's im2col path), on Eigen.
//
// Why Eigen and not the BLAS: Eigen's kernels are compiled for this machine (-march=native), so
// their speed does not hang on a BLAS library recognising the CPU at run time. OpenBLAS does not
// know every CPU it meets, and on an unknown one it falls back to its generic SSE3 kernels. Eigen
// runs on the calling thread only, so it adds no threading layer to ours.
#pragma once

#include <cstdint>

namespace ag::kernels {

/// C[M, N] = op(A)[M, K] op(B)[K, N], or C += that when `accumulate`. All row-major and contiguous;
/// A is stored [K, M] when transpose_a and B is stored [N, K] when transpose_b, and is read in
/// place (nothing is transposed in memory). Makes no heap allocation for LeNet's sizes (its
/// packing buffers are on the stack up to 1 MiB; see meson.build).
template <class T>
void gemm(bool transpose_a, bool transpose_b, std::int64_t M, std::int64_t N, std::int64_t K,
          const T* A, const T* B, bool accumulate, T* C);

/// y[M] = A[M, N] x[N], or y += that when `accumulate`; A row-major. For one row of a batch, which a
/// GEMM's packing and blocking would only slow down.
template <class T>
void gemv(std::int64_t M, std::int64_t N, const T* A, const T* x, bool accumulate, T* y);

}  // namespace ag::kernels
