// Random affine distortions of digit images, and the pool of originals plus distorted copies that
// LeCun et al. (1998, section III-C) trained on: 60,000 originals and 540,000 distortions
// (translation, scaling, squeezing, horizontal shearing), presented as 20 passes of 60,000.
//
// Every byte is reproducible from a seed on any platform: the parameters come from ag::Generator
// (mt19937_64, fixed by the standard) and the resampling uses only +, -, *, /, std::floor and
// std::fma. Each multiply-add is an explicit std::fma, rounded once, so the compiler has none left
// to fuse or not (-march=native allows it to).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "autograd/tensor.hpp"
#include "models/data/mnist.hpp"

namespace nn {

/// A planar affine map in pixel coordinates relative to the image centre ((cols - 1) / 2,
/// (rows - 1) / 2), x to the right, y down. It takes a point (x, y) of the source to the point
///   x' = a x + b y + tx,   y' = c x + d y + ty
/// of the result. The identity is the default; tx = 1 moves the image one pixel right, ty = 1 one
/// pixel down; b > 0 shears horizontally, moving rows below the centre right and rows above left.
struct AffineMap {
  double a = 1, b = 0, c = 0, d = 1;
  double tx = 0, ty = 0;
};

/// Resamples `image` [rows, cols] through `map` into `out` [rows, cols] (distinct buffers): each
/// output pixel takes the bilinear interpolation of the source at the inverse image of its centre,
/// with background 0 outside the source, rounded to the nearest byte (halves up). A whole-pixel
/// translation, or the identity, moves bytes exactly.
/// Throws std::invalid_argument for non-positive sizes, a non-finite map or a singular one.
void apply_affine(const std::uint8_t* image, std::int64_t rows, std::int64_t cols, const AffineMap& map,
                  std::uint8_t* out);

/// Ranges of the random distortion; every parameter is uniform in its range, and 0 turns it off.
/// The paper does not give its ranges; these are chosen so that a distorted MNIST digit still looks
/// like handwriting and stays in its field. An MNIST digit fits a 20x20 box centred in 28x28, so:
/// ±2 px of translation keeps it inside the 4-pixel margin; ±10% of size (18 to 22 px) is the
/// spread of sizes among writers; ±10% of squeeze is a modest change of aspect ratio; a shear of
/// ±0.15 (±8.5 degrees) is the slant variation of ordinary handwriting. Since MNIST centres a digit
/// by its centre of mass, its box can sit a pixel or two off-centre, and large draws together can
/// carry a tall digit's end past the border: a few digits in a thousand lose a twentieth of their
/// ink (tests/models/data/distort_test.cpp bounds it). To keep every pixel, pad the images first
/// (the paper's network read the 28x28 digits in a 32x32 field).
struct AffineDistortion {
  double translate_x_max = 2;  // tx uniform in [-max, max] pixels (right)
  double translate_y_max = 2;  // ty uniform in [-max, max] pixels (down)
  double scale_max = 0.1;      // both axes times s, s uniform in [1 - max, 1 + max]; max < 1
  double squeeze_max = 0.1;    // x times (1 + q), y divided by (1 + q), q uniform in [-max, max]; max < 1
  double shear_max = 0.15;     // x' gains h (y' - ty), h uniform in [-max, max]
};

/// Draws one map from `ranges`: five uniform() calls in this order, always all five (a zero range
/// still draws, so each parameter's value does not depend on the other ranges):
///   tx, ty, s, q, h,  each max * (2u - 1)  (s as 1 + scale_max (2u - 1), likewise 1 + q).
/// The map scales, then squeezes, then shears, then translates:
///   a = s (1 + q),  b = h s / (1 + q),  c = 0,  d = s / (1 + q).
/// Throws std::invalid_argument for a negative or non-finite range, or scale_max or squeeze_max >= 1.
AffineMap random_affine(const AffineDistortion& ranges, ag::Generator& generator);

/// apply_affine(image, rows, cols, random_affine(ranges, generator), out).
void distort(const std::uint8_t* image, std::int64_t rows, std::int64_t cols, const AffineDistortion& ranges,
             ag::Generator& generator, std::uint8_t* out);

struct DistortedPoolOptions {
  std::int64_t copies = 9;   // distorted copies of each original (the paper: 540,000 / 60,000)
  std::int64_t passes = 20;  // passes of N presentations each
  std::uint64_t seed = 0;    // fixes every distortion and the order of presentation
  AffineDistortion ranges{};
};

/// The originals of a split and `copies` random distortions of each, presented pass by pass.
///
/// Entry k of the pool (k < pool_size() = N (1 + copies)) is original k for k < N, and otherwise a
/// distortion of original k % N drawn from a Generator of its own, seeded by (seed, k) alone: an
/// entry's bytes do not depend on which entries were made before it, on which thread, or whether
/// the run was resumed. Distortions are made on demand (the paper's 540,000 would take 423 MB).
///
/// Presentation: the pool is shuffled into a fresh random order, again and again, and the orders
/// are laid end to end; pass p shows the N entries at [p N, (p + 1) N) of that sequence. So when
/// passes N is a multiple of the pool size (the paper: 20 x 60,000 = 2 x 600,000), every entry is
/// shown exactly passes N / pool_size() times; otherwise counts differ by at most one. The orders
/// are drawn in the constructor from the seed alone.
///
/// A class rather than free functions because the split, the seed, the ranges and the drawn order
/// must agree between entry(), image() and label(); here they cannot be passed mismatched. The
/// split is not copied: it must outlive the pool. Const members are safe to call from several
/// threads at once.
class DistortedPool {
 public:
  /// Throws std::invalid_argument for an inconsistent split, copies or passes < 0, bad ranges, or
  /// a schedule too large to hold.
  DistortedPool(const MnistSplit& originals, const DistortedPoolOptions& options = {});
  /// The split is not copied, so a temporary one would not outlive the pool.
  DistortedPool(MnistSplit&&, const DistortedPoolOptions& = {}) = delete;

  std::int64_t originals() const { return originals_->count; }  // N
  std::int64_t pool_size() const { return pool_size_; }          // N (1 + copies)
  std::int64_t passes() const { return passes_; }
  std::int64_t rows() const { return originals_->rows; }
  std::int64_t cols() const { return originals_->cols; }

  /// The pool entries pass `pass` shows, in order: N of them.
  std::span<const std::int64_t> pass_entries(std::int64_t pass) const;
  /// pass_entries(pass)[position].
  std::int64_t entry(std::int64_t pass, std::int64_t position) const;

  /// Writes entry `entry`'s image, rows() x cols() bytes, to `out`.
  void image(std::int64_t entry, std::uint8_t* out) const;
  /// The label of entry `entry`: its original's.
  int label(std::int64_t entry) const;

 private:
  void check_entry(const char* op, std::int64_t entry) const;

  const MnistSplit* originals_;
  std::int64_t copies_, passes_, pool_size_;
  std::uint64_t seed_;
  AffineDistortion ranges_;
  std::vector<std::int64_t> schedule_;  // [passes, N]: the pool entries in order of presentation
};

/// Fills images:[B, 1, rows, cols] and targets:[B] with the pool entries `entries`, exactly as
/// nn::fill_batch (mnist.hpp) fills them from a split holding these images: same normalisation,
/// same buffer reuse, and shift augmentation on top when options.max_shift > 0 (drawing from
/// `generator`). Throws std::invalid_argument for an entry outside the pool, or as fill_batch does.
void fill_batch(ag::Tensor& images, std::vector<std::int64_t>& targets, const DistortedPool& pool,
                std::span<const std::int64_t> entries, const BatchOptions& options = {},
                ag::Generator* generator = nullptr);

}  // namespace nn
