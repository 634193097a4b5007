// A convolution computed one image at a time and directly (no im2col matrix): its forward and both
// adjoints, for fused ops that take an image through several steps while its intermediate values
// are still in the caches (conv2d_scaled_tanh_subsampling2d, ops/fusion/fusion.hpp).
//
// Which kernels run: float32 at stride 1 with kernels at most 8 wide gets the AVX-512 kernels
// (direct_conv_avx512.cpp) when the build's CPU has AVX-512, else the AVX2 ones
// (direct_conv_avx2.cpp); both are one algorithm, direct_conv_vectorized.hpp, instantiated for
// 16- and 8-float registers. Everything else, and float64, runs the plain loops of
// direct_conv.cpp, the reference the vectorised kernels are tested against.
#pragma once

#include <memory>

#include "ops/kernels/conv_geometry.hpp"

namespace ag::kernels {

/// The instruction sets the vectorised kernels are written for; Plain is the scalar loops.
enum class Isa { Plain, Avx2, Avx512 };
const char* isa_name(Isa isa);  // "plain", "AVX2", "AVX-512"

/// The widest instruction set this thread's direct convolutions may use: the widest the build's
/// CPU has (-march=native), unless an IsaLimit lowers it.
Isa widest_isa();

/// While alive, this thread's direct convolutions use no instruction set wider than `widest` (tests
/// run the AVX2 kernels and the plain loops on an AVX-512 machine this way).
class IsaLimit {
 public:
  explicit IsaLimit(Isa widest);
  ~IsaLimit();
  IsaLimit(const IsaLimit&) = delete;
  IsaLimit& operator=(const IsaLimit&) = delete;

 private:
  Isa previous_;
};

/// The convolution of g, one image at a time (g.batch is not used):
///   z_n[o, h, w] = b[o] + sum_{c, p, q} w[o, c, p, q] x_n[c, h*stride + p - padding, ...]
/// Made once per batch by direct_convolution(), which also prepares (reorders) the weights; not for
/// use by several threads at once.
template <class T>
class DirectConvolution {
 public:
  virtual ~DirectConvolution() = default;
  virtual Isa isa() const = 0;
  /// z_n:[Cout, Ho, Wo] from x_n:[Cin, H, W] and b:[Cout] (or null: no bias).
  virtual void forward(const T* x_n, const T* b, T* z_n) = 0;
  /// Adds image n's term of the weight gradient, sum over positions of dz_n times the patch of x_n
  /// under it, to a sum the object keeps (dz_n:[Cout, Ho, Wo]).
  virtual void add_grad_w(const T* x_n, const T* dz_n) = 0;
  /// dw:[Cout, Cin, KH, KW] += the sum of every add_grad_w so far.
  virtual void finish_grad_w(T* dw) = 0;
  /// dx_n:[Cin, H, W] = the adjoint of the convolution applied to dz_n (overwritten).
  virtual void grad_x(const T* dz_n, T* dx_n) = 0;
};

/// The kernels for g and the weights w:[Cout, Cin, KH, KW], which forward and grad_x read (w may be
/// null when only add_grad_w will be called; it must outlive the object). The widest instruction
/// set allowed (widest_isa()) that covers g, else the plain loops.
template <class T>
std::shared_ptr<DirectConvolution<T>> direct_convolution(const ConvGeometry& g, const T* w);

// The vectorised kernels: null when the build's CPU lacks the instructions or g is not covered
// (stride other than 1, kernel wider than 8). Defined in direct_conv_avx512.cpp and
// direct_conv_avx2.cpp.
std::shared_ptr<DirectConvolution<float>> direct_convolution_avx512(const ConvGeometry& g,
                                                                    const float* w);
std::shared_ptr<DirectConvolution<float>> direct_convolution_avx2(const ConvGeometry& g,
                                                                  const float* w);

}  // namespace ag::kernels
