// Kernels of conv2d_scaled_tanh_subsampling2d (ops/fusion/fusion.hpp), which takes an image, or a
// block of images, at a time through its steps while their intermediate values are still in the
// caches:
//   - a convolution computed directly (no im2col matrix), forward and both adjoints;
//   - the 2x2 subsampling after it and its step back through the scaled tanh's slope;
//   - both again over a block of images, one in each lane of the registers (LaneConvolution), for
//     float32 batches of at least a block, skipping the pairs a connection table leaves out.
//
// Which kernels run: float32 at stride 1 with kernels at most 8 wide gets the AVX-512 kernels
// (conv_subsampling_avx512.cpp) when the build's CPU has AVX-512, else the AVX2 ones
// (conv_subsampling_avx2.cpp); both are one algorithm, conv_subsampling_vectorized.hpp (an image
// at a time) and conv_subsampling_lanes.hpp (a block), instantiated for 16- and 8-float registers. Everything else, and float64, runs plain loops: the
// convolution's in conv_subsampling_plain.cpp, the subsampling's in the op itself
// (conv_subsampling.cpp); they are the reference the vectorised kernels are tested against.
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

/// The slope of a scaled tanh from its value a: ratio (square - a^2).
struct SlopeOfScaledTanh {
  float ratio, square;  // slope / amplitude, amplitude^2
};

/// The convolution, its 2x2 subsampling and their adjoints for a block of lanes() images at once,
/// one image in each lane of the registers (conv_subsampling_lanes.hpp): a block's values are
/// stored images innermost, [C][H][W][lanes], its lanes past the last image 0 on the way in. The
/// pairs of channels a connection table leaves out cost nothing in any pass, which the per-image
/// kernels (16 output channels in a register) cannot skip. Made by lane_convolution(); not for use
/// by several threads at once.
class LaneConvolution {
 public:
  virtual ~LaneConvolution() = default;
  virtual Isa isa() const = 0;
  virtual std::int64_t lanes() const = 0;
  /// out:[size][lanes] from images:[count][size], count <= lanes (the lanes past count are 0).
  virtual void to_lanes(const float* images, std::int64_t count, std::int64_t size, float* out) = 0;
  /// images:[count][size] from the first count lanes of in:[size][lanes].
  virtual void to_images(const float* in, std::int64_t count, std::int64_t size, float* images) = 0;
  /// z:[Cout][Ho][Wo][lanes] = b + the convolution of x:[Cin][H][W][lanes] (b may be null).
  virtual void forward(const float* x, const float* b, float* z) = 0;
  /// y:[Cout][Ho/2][Wo/2][lanes] = weight[c] (the 2x2 window sum of a:[Cout][Ho][Wo][lanes])
  /// + bias[c] (bias may be null).
  virtual void subsample(const float* a, const float* weight, const float* bias, float* y) = 0;
  /// subsample_2x2_adjoint's step for the block (t and a in lanes); its dz, when scale is given, is
  /// kept for add_grad_w and grad_x.
  virtual void subsample_adjoint(const float* t, const float* a, const float* scale,
                                 SlopeOfScaledTanh slope, bool squared, float* grad_b,
                                 float* grad_weight, float* grad_bias) = 0;
  /// Adds the block's term of the weight gradient: the last dz against x:[Cin][H][W][lanes].
  virtual void add_grad_w(const float* x) = 0;
  /// dw:[Cout, Cin, KH, KW] += the sum of every add_grad_w so far (0 off the connection table).
  virtual void finish_grad_w(float* dw) = 0;
  /// dx:[Cin][H][W][lanes] = the adjoint of the convolution applied to the last dz.
  virtual void grad_x(float* dx) = 0;
};

/// The lanes kernels of `isa` (or the next narrower the build has) for g, the weights w:[Cout, Cin, KH, KW] (read by forward and
/// grad_x; may be null when only add_grad_w will be called; must outlive the object) and the
/// connection table; null when the build lacks the instructions or g is not covered (float32
/// only: stride 1, no padding, kernels at most 8 wide, an output of whole 2x2 windows).
std::shared_ptr<LaneConvolution> lane_convolution(Isa isa, const ConvGeometry& g, const float* w,
                                                  const ConnectionTable& connections);
std::shared_ptr<LaneConvolution> lane_convolution_avx512(const ConvGeometry& g, const float* w,
                                                         const ConnectionTable& connections);
std::shared_ptr<LaneConvolution> lane_convolution_avx2(const ConvGeometry& g, const float* w,
                                                       const ConnectionTable& connections);

/// The 2x2 subsampling (windows every 2) of one image's scaled tanh a:[C, H, W], H and W even:
///   y[c, i, j] = weight[c] (window sum of a) + bias[c]   (bias may be null) -> y:[C, H/2, W/2]
/// Vectorised with `isa` (float32); returns false, having done nothing, for Isa::Plain or an
/// instruction set the build lacks: the caller then runs its plain loops.
bool subsample_2x2(Isa isa, std::int64_t channels, std::int64_t height, std::int64_t width,
                   const float* a, const float* weight, const float* bias, float* y);

/// The step back through the 2x2 subsampling and the scaled tanh, for one image: given
/// t:[C, H/2, W/2] (dy, or the curvature h) and a:[C, H, W],
///   dz[c, h, w] = t[c, h/2, w/2] scale[c] slope(a[c, h, w]),  slope(a) = ratio (square - a^2)
/// (slope(a)^2 when `squared`), into dz:[C, H, W] unless it is null, and adds the sums of the image
/// to those wanted (null where not): grad_b[c] of dz, grad_weight[c] of t (window sum of a, squared
/// when `squared`), grad_bias[c] of t. Vectorised as subsample_2x2, false when it declines.
bool subsample_2x2_adjoint(Isa isa, std::int64_t channels, std::int64_t height,
                           std::int64_t width, const float* t, const float* a, const float* scale,
                           SlopeOfScaledTanh slope, bool squared, float* dz, float* grad_b,
                           float* grad_weight, float* grad_bias);

// The vectorised kernels: null when the build's CPU lacks the instructions or g is not covered
// (stride other than 1, kernel wider than 8). Defined in conv_subsampling_avx512.cpp and
// conv_subsampling_avx2.cpp.
std::shared_ptr<DirectConvolution<float>> direct_convolution_avx512(const ConvGeometry& g,
                                                                    const float* w);
std::shared_ptr<DirectConvolution<float>> direct_convolution_avx2(const ConvGeometry& g,
                                                                  const float* w);
// The subsampling steps' entry points for each instruction set (as subsample_2x2 and
// subsample_2x2_adjoint, without the isa argument).
bool subsample_2x2_avx512(std::int64_t channels, std::int64_t height, std::int64_t width,
                          const float* a, const float* weight, const float* bias, float* y);
bool subsample_2x2_avx2(std::int64_t channels, std::int64_t height, std::int64_t width,
                        const float* a, const float* weight, const float* bias, float* y);
bool subsample_2x2_adjoint_avx512(std::int64_t channels, std::int64_t height, std::int64_t width,
                                  const float* t, const float* a, const float* scale,
                                  SlopeOfScaledTanh slope, bool squared, float* dz, float* grad_b,
                                  float* grad_weight, float* grad_bias);
bool subsample_2x2_adjoint_avx2(std::int64_t channels, std::int64_t height, std::int64_t width,
                                const float* t, const float* a, const float* scale,
                                SlopeOfScaledTanh slope, bool squared, float* dz, float* grad_b,
                                float* grad_weight, float* grad_bias);

}  // namespace ag::kernels
