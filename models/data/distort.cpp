// Random affine distortions and the pool of distorted copies. See distort.hpp.
#include "models/data/distort.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

namespace nn {

namespace {

// The seed of pool entry k's generator. The presentation order uses "entry -1", so it shares its
// stream with no entry.
std::uint64_t entry_seed(std::uint64_t seed, std::int64_t k) {
  return ag::mix_seed(ag::mix_seed(seed) + static_cast<std::uint64_t>(k));
}

void check_sizes(const char* op, std::int64_t rows, std::int64_t cols) {
  if (rows <= 0 || cols <= 0)
    ag::fail(op, "image size " + std::to_string(rows) + "x" + std::to_string(cols) + " must be positive");
}

void check_ranges(const char* op, const AffineDistortion& ranges) {
  const auto check = [op](const char* name, double value, double below) {
    if (!(value >= 0 && value < below))
      ag::fail(op, std::string(name) + " must be in [0, " + (below == 1 ? "1" : "inf") + "), got " +
                       std::to_string(value));
  };
  const double infinity = HUGE_VAL;
  check("translate_x_max", ranges.translate_x_max, infinity);
  check("translate_y_max", ranges.translate_y_max, infinity);
  check("scale_max", ranges.scale_max, 1);  // s > 0: no reflection, no collapse
  check("squeeze_max", ranges.squeeze_max, 1);
  check("shear_max", ranges.shear_max, infinity);
}

}  // namespace

void apply_affine(const std::uint8_t* image, std::int64_t rows, std::int64_t cols, const AffineMap& map,
                  std::uint8_t* out) {
  check_sizes("apply_affine", rows, cols);
  for (const double value : {map.a, map.b, map.c, map.d, map.tx, map.ty})
    if (!std::isfinite(value)) ag::fail("apply_affine", "the map has a non-finite coefficient");
  // Inverse mapping: output pixel (x', y') samples the source at L^-1 ((x', y') - t).
  const double det = std::fma(map.a, map.d, -(map.b * map.c));
  const double ia = map.d / det, ib = -map.b / det, ic = -map.c / det, id = map.a / det;
  if (det == 0 || !std::isfinite(ia) || !std::isfinite(ib) || !std::isfinite(ic) || !std::isfinite(id))
    ag::fail("apply_affine", "the map is singular (determinant " + std::to_string(det) + ")");

  const double cx = static_cast<double>(cols - 1) / 2, cy = static_cast<double>(rows - 1) / 2;
  const auto pixel = [&](std::int64_t r, std::int64_t c) -> double {
    return r >= 0 && r < rows && c >= 0 && c < cols ? image[r * cols + c] : 0.0;
  };
  for (std::int64_t r = 0; r < rows; ++r) {
    const double v = (static_cast<double>(r) - cy) - map.ty;
    const double row_x = std::fma(ib, v, cx), row_y = std::fma(id, v, cy);
    for (std::int64_t c = 0; c < cols; ++c) {
      const double u = (static_cast<double>(c) - cx) - map.tx;
      const double sx = std::fma(ia, u, row_x), sy = std::fma(ic, u, row_y);  // source position
      const double x0 = std::floor(sx), y0 = std::floor(sy);
      std::uint8_t& result = out[r * cols + c];
      // No neighbour inside the source (compared as doubles: a far point would overflow int64).
      if (!(x0 >= -1 && x0 < static_cast<double>(cols) && y0 >= -1 && y0 < static_cast<double>(rows))) {
        result = 0;
        continue;
      }
      const auto c0 = static_cast<std::int64_t>(x0), r0 = static_cast<std::int64_t>(y0);
      const double fx = sx - x0, fy = sy - y0;  // in [0, 1), exact
      const double p00 = pixel(r0, c0), p01 = pixel(r0, c0 + 1);
      const double p10 = pixel(r0 + 1, c0), p11 = pixel(r0 + 1, c0 + 1);
      const double top = std::fma(fx, p01 - p00, p00), bottom = std::fma(fx, p11 - p10, p10);
      // Each step rounds a value between its two ends, so the result stays in [0, 255].
      const double value = std::fma(fy, bottom - top, top);
      result = static_cast<std::uint8_t>(std::floor(value + 0.5));
    }
  }
}

AffineMap random_affine(const AffineDistortion& ranges, ag::Generator& generator) {
  check_ranges("random_affine", ranges);
  // 2u - 1 is exact (u is a multiple of 2^-53 in [0, 1)), so each parameter is one rounding.
  const auto symmetric = [&generator]() { return 2 * generator.uniform() - 1; };  // [-1, 1)
  const double tx = ranges.translate_x_max * symmetric();
  const double ty = ranges.translate_y_max * symmetric();
  const double s = std::fma(ranges.scale_max, symmetric(), 1.0);
  const double squeeze = std::fma(ranges.squeeze_max, symmetric(), 1.0);  // 1 + q
  const double h = ranges.shear_max * symmetric();
  // [1 h; 0 1] [1+q 0; 0 1/(1+q)] [s 0; 0 s]
  return AffineMap{.a = s * squeeze, .b = h * s / squeeze, .c = 0, .d = s / squeeze, .tx = tx, .ty = ty};
}

void distort(const std::uint8_t* image, std::int64_t rows, std::int64_t cols, const AffineDistortion& ranges,
             ag::Generator& generator, std::uint8_t* out) {
  apply_affine(image, rows, cols, random_affine(ranges, generator), out);
}

// ---- DistortedPool ----

DistortedPool::DistortedPool(const MnistSplit& originals, const DistortedPoolOptions& options)
    : originals_(&originals), copies_(options.copies), passes_(options.passes), pool_size_(0),
      seed_(options.seed), ranges_(options.ranges) {
  const MnistSplit& data = originals;
  check_sizes("DistortedPool", data.rows, data.cols);
  if (data.count < 0 || data.images.size() != static_cast<std::size_t>(data.count * data.rows * data.cols) ||
      data.labels.size() != static_cast<std::size_t>(data.count))
    ag::fail("DistortedPool", "the split's sizes disagree: " + std::to_string(data.count) + " examples of " +
                                  std::to_string(data.rows) + "x" + std::to_string(data.cols) + " but " +
                                  std::to_string(data.images.size()) + " pixel bytes and " +
                                  std::to_string(data.labels.size()) + " labels");
  if (copies_ < 0) ag::fail("DistortedPool", "copies must be non-negative, got " + std::to_string(copies_));
  if (passes_ < 0) ag::fail("DistortedPool", "passes must be non-negative, got " + std::to_string(passes_));
  check_ranges("DistortedPool", ranges_);
  std::int64_t presentations = 0;
  if (__builtin_mul_overflow(data.count, copies_ + 1, &pool_size_) ||
      __builtin_mul_overflow(data.count, passes_, &presentations) ||
      static_cast<std::uint64_t>(presentations) > schedule_.max_size())
    ag::fail("DistortedPool", std::to_string(data.count) + " originals with " + std::to_string(copies_) +
                                  " copies over " + std::to_string(passes_) + " passes is too large");

  ag::Generator order_generator(entry_seed(seed_, -1));
  schedule_.reserve(static_cast<std::size_t>(presentations));
  while (static_cast<std::int64_t>(schedule_.size()) < presentations) {
    const std::vector<std::int64_t> order = example_order(pool_size_, &order_generator);
    const std::int64_t take =
        std::min(pool_size_, presentations - static_cast<std::int64_t>(schedule_.size()));
    schedule_.insert(schedule_.end(), order.begin(), order.begin() + take);
  }
}

std::span<const std::int64_t> DistortedPool::pass_entries(std::int64_t pass) const {
  if (pass < 0 || pass >= passes_)
    ag::fail("DistortedPool::pass_entries",
             "pass " + std::to_string(pass) + " is outside [0, " + std::to_string(passes_) + ")");
  const std::int64_t n = originals();
  return std::span<const std::int64_t>(schedule_).subspan(static_cast<std::size_t>(pass * n),
                                                          static_cast<std::size_t>(n));
}

std::int64_t DistortedPool::entry(std::int64_t pass, std::int64_t position) const {
  const std::span<const std::int64_t> entries = pass_entries(pass);
  if (position < 0 || position >= originals())
    ag::fail("DistortedPool::entry",
             "position " + std::to_string(position) + " is outside [0, " + std::to_string(originals()) + ")");
  return entries[static_cast<std::size_t>(position)];
}

void DistortedPool::check_entry(const char* op, std::int64_t entry) const {
  if (entry < 0 || entry >= pool_size_)
    ag::fail(op, "entry " + std::to_string(entry) + " is outside the pool [0, " + std::to_string(pool_size_) +
                     ")");
}

void DistortedPool::image(std::int64_t entry, std::uint8_t* out) const {
  check_entry("DistortedPool::image", entry);
  const std::int64_t pixels = rows() * cols();
  const std::uint8_t* original = originals_->images.data() + (entry % originals()) * pixels;
  if (entry < originals()) {
    std::memcpy(out, original, static_cast<std::size_t>(pixels));
    return;
  }
  ag::Generator generator(entry_seed(seed_, entry));
  distort(original, rows(), cols(), ranges_, generator, out);
}

int DistortedPool::label(std::int64_t entry) const {
  check_entry("DistortedPool::label", entry);
  return originals_->labels[static_cast<std::size_t>(entry % originals())];
}

void fill_batch(ag::Tensor& images, std::vector<std::int64_t>& targets, const DistortedPool& pool,
                std::span<const std::int64_t> entries, const BatchOptions& options, ag::Generator* generator) {
  // The batch's images as a split of their own, which the MNIST fill_batch then normalises.
  const auto batch = static_cast<std::int64_t>(entries.size());
  const std::int64_t pixels = pool.rows() * pool.cols();
  MnistSplit part{.count = batch,
                  .rows = pool.rows(),
                  .cols = pool.cols(),
                  .images = std::vector<std::uint8_t>(static_cast<std::size_t>(batch * pixels)),
                  .labels = std::vector<std::uint8_t>(entries.size())};
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t entry = entries[static_cast<std::size_t>(b)];
    pool.image(entry, part.images.data() + b * pixels);
    part.labels[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(pool.label(entry));
  }
  const std::vector<std::int64_t> indices = example_order(batch);
  fill_batch(images, targets, part, indices, options, generator);
}

}  // namespace nn
