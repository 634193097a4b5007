// Fusion: chains of ops run as one kernel, found by the op layer itself, so that a model script
// written op by op gets the fused speed without asking for it.
//
// Which chains fuse, and where:
//   conv2d -> relu -> max_pool2d               conv2d_max_pool2d with relu
//   conv2d -> max_pool2d                       conv2d_max_pool2d without relu
//   conv2d -> scaled_tanh -> subsampling2d     conv2d_scaled_tanh_subsampling2d
//     (-> scaled_tanh)                           with the scaled tanh after the subsampling
// for any convolution (stride, padding, with or without bias; a connection table only in the
// subsampling chain, the max-pool chain runs unfused with one), any square pooling window (up to 15
// for max_pool2d) and any pooling stride, float32 or float64, with or without gradients. Which
// kernel runs:
//   conv2d_max_pool2d: float32, convolution stride 1, 2x2 pooling with stride 2 (LeNet-5's conv1
//     and conv2): AVX-512 kernels (ops/fusion/conv_pool_avx512.cpp) when the build's CPU has
//     AVX-512, else AVX2 (conv_pool_avx2.cpp; by width only for kernels up to 8 wide); everything
//     else: the plain loops of conv_pool.hpp, over the same sums.
//   conv2d_scaled_tanh_subsampling2d: a float32 batch of at least a register's lanes of images
//     (16 with AVX-512, 8 with AVX2), at stride 1 without padding and with 2x2 windows tiling the
//     output, in blocks of images, one in each lane (kernels::LaneConvolution), where the pairs off
//     a connection table cost nothing; otherwise one image at a time, the convolution by the direct
//     kernels of ops/fusion/conv_subsampling.hpp (AVX-512 or AVX2 for float32 at stride 1, else
//     plain loops). Either way the scaled tanh and the subsampling follow while the block or the
//     image is in the caches.
// Nothing else fuses: conv2d followed by any other op (tanh, avg_pool2d, a second use of its
// output) computes conv2d the ordinary way when that op asks for its value.
//
// How: with fusion on (the default), conv2d does not compute anything yet: it returns a deferred
// Variable (autograd/variable.hpp) that remembers its arguments. relu or scaled_tanh over such a
// Variable returns another deferred one ("conv2d, then relu"), and max_pool2d over the conv2d or
// its relu runs conv2d_max_pool2d below: one pass that convolves, adds the bias, applies relu and
// pools, and keeps only which element of each window won. Its backward sends each gradient to the
// winner alone, so the convolution's backward touches a quarter of the positions. subsampling2d
// over a scaled tanh of a conv2d defers in turn; a scaled_tanh over that runs
// conv2d_scaled_tanh_subsampling2d with both tanhs, and any other use runs it without the second.
// Any other use of a deferred conv2d or its activation (its value, its node, another op) computes
// it with the ordinary ops, so the result never depends on whether fusion happened, only its speed
// (and, in float32, the order of its sums). The unfused ops stay the reference:
// tests/ops/fusion_test.cpp and tests/ops/conv_subsampling_test.cpp compare the two paths, and
// NoFusionGuard turns fusion off.
#pragma once

#include <cstdint>
#include <optional>

#include "autograd/variable.hpp"
#include "ops/conv2d.hpp"

namespace ag {

struct ConvPoolOptions {
  std::int64_t stride = 1;       // of the convolution
  std::int64_t padding = 0;      // of the convolution, zeros
  bool relu = true;              // relu between the convolution and the pooling
  std::int64_t pool_kernel = 2;  // square window, at most 15
  std::int64_t pool_stride = 0;  // 0: same as pool_kernel
};

/// y = max_pool2d(relu(conv2d(x, w, b, stride, padding)), pool_kernel, pool_stride), in one pass
/// (without .relu: max_pool2d(conv2d(...))). The gradient of each pooled value goes to its window's
/// first maximum (row-major), and through relu only where that maximum is > 0:
///   dz[winner] = dy (0 elsewhere);  dw, db, dx as conv2d's backward of dz, over winners only.
/// x:[N, Cin, H, W]  w:[Cout, Cin, KH, KW]  b:[Cout] or undefined -> y:[N, Cout, Ph, Pw]
/// with Ho = (H + 2 padding - KH) / stride + 1, Ph = (Ho - pool_kernel) / pool_stride + 1 (likewise
/// W). Saved for backward: x and w (shared) and one byte per output naming its winner.
/// float32 or float64; float32 uses AVX-512 or AVX2 kernels, whichever the build's CPU has, for
/// the shapes they cover (stride 1, 2x2 pool; ops/fusion/conv_pool.hpp), every other case a plain
/// loop over the same sums.
Variable conv2d_max_pool2d(const Variable& x, const Variable& w, const Variable& b,
                           const ConvPoolOptions& options);

/// amplitude * tanh(slope * v), as scaled_tanh computes it; amplitude != 0.
struct ScaledTanhOptions {
  double amplitude = 1;
  double slope = 1;
};

struct ConvSubsamplingOptions {
  std::int64_t stride = 1;                           // of the convolution
  std::int64_t padding = 0;                          // of the convolution, zeros
  ConnectionTable connections = {};                  // of the convolution
  ScaledTanhOptions tanh = {};                       // between the convolution and the subsampling
  std::int64_t pool_kernel = 2;                      // square window
  std::int64_t pool_stride = 0;                      // 0: same as pool_kernel
  std::optional<ScaledTanhOptions> tanh_after = {};  // after the subsampling, if any
};

/// y = subsampling2d(scaled_tanh(conv2d(x, w, b, connections, stride, padding), tanh), pool_weight,
/// pool_bias, pool_kernel, pool_stride), then scaled_tanh(y, tanh_after) when given; an image, or a
/// block of images in the registers' lanes, at a time:
///   z = conv2d(x);  a = amplitude tanh(slope z);  p[c] = pool_weight[c] (window sum of a) + pool_bias[c]
///   y = p, or amplitude' tanh(slope' p)
///   dp = dy, or dy (slope' / amplitude')(amplitude'^2 - y^2);  da = dp pool_weight[c] on every
///   element of its window;  dz = da (slope / amplitude)(amplitude^2 - a^2);
///   dx, dw, db: conv2d's backward of dz;  dpool_weight, dpool_bias: subsampling2d's of dp.
/// Its curvature rule is the ops' (Gauss-Newton through each tanh): the same adjoint with every
/// factor squared.
/// x:[N, Cin, H, W]  w:[Cout, Cin, KH, KW]  b:[Cout] or undefined  pool_weight:[Cout]
/// pool_bias:[Cout] or undefined -> y:[N, Cout, Ph, Pw], Ho = (H + 2 padding - KH) / stride + 1,
/// Ph = (Ho - pool_kernel) / pool_stride + 1 (likewise W). Saved for backward: x, w and
/// pool_weight (shared) when a gradient needs them, a:[N, Cout, Ho, Wo], and y with tanh_after.
Variable conv2d_scaled_tanh_subsampling2d(const Variable& x, const Variable& w, const Variable& b,
                                          const Variable& pool_weight, const Variable& pool_bias,
                                          const ConvSubsamplingOptions& options);

/// Whether ops defer and fuse on this thread (on unless a NoFusionGuard is alive).
bool fusion_enabled();

/// While alive, every op computes its result at once and nothing is fused: the reference path.
class NoFusionGuard {
 public:
  NoFusionGuard();
  ~NoFusionGuard();
  NoFusionGuard(const NoFusionGuard&) = delete;
  NoFusionGuard& operator=(const NoFusionGuard&) = delete;

 private:
  bool previous_;
};

// The fusion rules, called by the ops themselves (conv2d.cpp, activation.cpp, pool.cpp); each
// returns an undefined Variable when its op should run as usual.

/// conv2d's result, deferred. Arguments already validated.
Variable defer_conv2d(const Variable& x, const Variable& w, const Variable& b,
                      const ConnectionTable& connections, std::int64_t stride,
                      std::int64_t padding);
/// relu over a deferred conv2d: deferred "conv2d, then relu".
Variable fuse_relu(const Variable& x);
/// scaled_tanh over a deferred conv2d: deferred "conv2d, then scaled_tanh"; over a deferred
/// subsampling of that: conv2d_scaled_tanh_subsampling2d with the tanh after. Arguments already
/// validated.
Variable fuse_scaled_tanh(const Variable& x, double amplitude, double slope);
/// max_pool2d over a deferred conv2d (with or without relu): conv2d_max_pool2d. Arguments already
/// validated, stride already resolved.
Variable fuse_max_pool2d(const Variable& x, std::int64_t kernel, std::int64_t stride);
/// subsampling2d over a deferred scaled tanh of a conv2d: deferred, for a scaled_tanh to join;
/// computed by conv2d_scaled_tanh_subsampling2d. Arguments already validated, stride already
/// resolved.
Variable fuse_subsampling2d(const Variable& x, const Variable& weight, const Variable& bias,
                            std::int64_t kernel, std::int64_t stride);

}  // namespace ag
