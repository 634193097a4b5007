// Kernels of the fused convolution + (relu) + max-pool (ops/fusion/fusion.hpp): the plain loops that work
// for every geometry and both precisions, and the entry points of the AVX-512 and AVX2 ones.
//
// Both families agree on what the forward saves: one byte per pooled output, in y's layout
// [N, Cout, Ph, Pw], naming the window element that won (slot p * pool_kernel + q, the first
// maximum in row-major order), or kNoWinner when relu cut the maximum to 0 (no gradient flows).
#pragma once

#include <cstdint>

#include "ops/kernels/conv_geometry.hpp"

namespace ag::kernels {

inline constexpr std::uint8_t kNoWinner = 0xFF;

struct PoolGeometry {
  std::int64_t kernel, stride;  // square window, stride >= 1
  std::int64_t out_h, out_w;    // Ph, Pw
  bool relu;
};

// z[n, o, h, w] = b[o] + sum_{c, p, q} w[o, c, p, q] * x_padded[n, c, h*stride + p, w*stride + q]
template <class T>
T conv_at(const ConvGeometry& g, const T* x, const T* w, const T* b, std::int64_t n, std::int64_t o,
          std::int64_t h, std::int64_t col) {
  T z = b ? b[o] : T(0);
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p) {
      const std::int64_t row = h * g.stride + p - g.padding;
      if (row < 0 || row >= g.height) continue;
      const T* x_row = x + ((n * g.in_channels + c) * g.height + row) * g.width;
      const T* w_row = w + ((o * g.in_channels + c) * g.kernel_h + p) * g.kernel_w;
      for (std::int64_t q = 0; q < g.kernel_w; ++q) {
        const std::int64_t x_col = col * g.stride + q - g.padding;
        if (x_col >= 0 && x_col < g.width) z += w_row[q] * x_row[x_col];
      }
    }
  return z;
}

// Forward, plain loops. x:[N, Cin, H, W]  w:[Cout, Cin, KH, KW]  b:[Cout] or null
//   -> y:[N, Cout, Ph, Pw], winners (same layout, or null when nothing is saved).
template <class T>
void conv_pool_forward(const ConvGeometry& g, const PoolGeometry& pool, const T* x, const T* w,
                       const T* b, T* y, std::uint8_t* winners) {
  std::int64_t out = 0;
  for (std::int64_t n = 0; n < g.batch; ++n)
    for (std::int64_t o = 0; o < g.out_channels; ++o)
      for (std::int64_t i = 0; i < pool.out_h; ++i)
        for (std::int64_t j = 0; j < pool.out_w; ++j, ++out) {
          T best = 0;
          std::int64_t best_slot = 0;
          for (std::int64_t p = 0; p < pool.kernel; ++p)
            for (std::int64_t q = 0; q < pool.kernel; ++q) {
              const T z = conv_at(g, x, w, b, n, o, i * pool.stride + p, j * pool.stride + q);
              const std::int64_t slot = p * pool.kernel + q;
              if (slot == 0 || z > best) best = z, best_slot = slot;  // strict: first max wins
            }
          // relu(max(z)) = max(relu(z)), and when it is > 0 its first maximum is z's.
          const bool alive = !pool.relu || best > T(0);
          y[out] = alive ? best : T(0);
          if (winners) winners[out] = alive ? static_cast<std::uint8_t>(best_slot) : kNoWinner;
        }
}

// Backward, plain loops over the winners only: with dz = dy at each winner (0 elsewhere),
//   db[o] += sum dz;  dw[o, c, p, q] += sum dz * x_padded[...];  dx[n, c, ...] += sum dz * w[o,
//   ...]
// Each of dx, dw, db may be null (not wanted); the others are accumulated into (+=). x is read
// only for dw and w only for dx, so either may be null when that gradient is.
template <class T>
void conv_pool_backward(const ConvGeometry& g, const PoolGeometry& pool, const T* x, const T* w,
                        const T* dy, const std::uint8_t* winners, T* dx, T* dw, T* db) {
  std::int64_t out = 0;
  for (std::int64_t n = 0; n < g.batch; ++n)
    for (std::int64_t o = 0; o < g.out_channels; ++o)
      for (std::int64_t i = 0; i < pool.out_h; ++i)
        for (std::int64_t j = 0; j < pool.out_w; ++j, ++out) {
          const std::uint8_t slot = winners[out];
          const T grad = dy[out];
          if (slot == kNoWinner || grad == T(0)) continue;
          const std::int64_t h = i * pool.stride + slot / pool.kernel;
          const std::int64_t col = j * pool.stride + slot % pool.kernel;
          if (db) db[o] += grad;
          for (std::int64_t c = 0; c < g.in_channels; ++c)
            for (std::int64_t p = 0; p < g.kernel_h; ++p) {
              const std::int64_t row = h * g.stride + p - g.padding;
              if (row < 0 || row >= g.height) continue;
              const std::int64_t x_row = ((n * g.in_channels + c) * g.height + row) * g.width;
              const std::int64_t w_row = ((o * g.in_channels + c) * g.kernel_h + p) * g.kernel_w;
              for (std::int64_t q = 0; q < g.kernel_w; ++q) {
                const std::int64_t x_col = col * g.stride + q - g.padding;
                if (x_col < 0 || x_col >= g.width) continue;
                if (dw) dw[w_row + q] += grad * x[x_row + x_col];
                if (dx) dx[x_row + x_col] += grad * w[w_row + q];
              }
            }
        }
}

// The vectorised kernels (float32), for stride 1 and a 2x2, stride 2 pool. Each returns false,
// having done nothing, when the geometry is not one it covers or the build's CPU lacks the
// instructions (-march=native); the caller then tries the next, and last runs the plain loops.
// Defined in conv_pool_avx512.cpp and conv_pool_avx2.cpp.
bool conv_pool_forward_avx512(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                              const float* w, const float* b, float* y, std::uint8_t* winners);
bool conv_pool_backward_avx512(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                               const float* w, const float* dy, const std::uint8_t* winners,
                               float* dx, float* dw, float* db);
bool conv_pool_forward_avx2(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                            const float* w, const float* b, float* y, std::uint8_t* winners);
bool conv_pool_backward_avx2(const ConvGeometry& g, const PoolGeometry& pool, const float* x,
                             const float* w, const float* dy, const std::uint8_t* winners,
                             float* dx, float* dw, float* db);

}  // namespace ag::kernels
