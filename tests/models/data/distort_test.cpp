// Tests for the affine distortions and the pool of distorted copies: exact maps checked pixel by
// pixel or by hand-computed values, random maps by their documented draw, the pool by its bytes,
// labels and schedule. The real data set is read only if tools/fetch-mnist has run.
#include "models/data/distort.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Bytes = std::vector<std::uint8_t>;

// Every pixel inked (1..255, no two neighbours equal), so a moved or interpolated pixel shows.
Bytes dense_image(std::int64_t rows, std::int64_t cols) {
  Bytes image(static_cast<std::size_t>(rows * cols));
  for (std::int64_t i = 0; i < rows * cols; ++i)
    image[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(1 + (i * 37 + i / cols * 11) % 255);
  return image;
}

// A block of ink rows [r0, r1) x columns [c0, c1) on background.
Bytes block_image(std::int64_t rows, std::int64_t cols, std::int64_t r0, std::int64_t r1, std::int64_t c0,
                  std::int64_t c1) {
  Bytes image(static_cast<std::size_t>(rows * cols), 0);
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t c = c0; c < c1; ++c) image[static_cast<std::size_t>(r * cols + c)] = 255;
  return image;
}

Bytes mapped(const Bytes& image, std::int64_t rows, std::int64_t cols, const nn::AffineMap& map) {
  Bytes out(image.size(), 77);
  nn::apply_affine(image.data(), rows, cols, map, out.data());
  return out;
}

Bytes distorted(const Bytes& image, std::int64_t rows, std::int64_t cols, const nn::AffineDistortion& ranges,
                std::uint64_t seed) {
  Bytes out(image.size(), 77);
  ag::Generator generator(seed);
  nn::distort(image.data(), rows, cols, ranges, generator, out.data());
  return out;
}

// Rows and columns holding a pixel >= threshold: {first row, last row, first column, last column}.
struct Box {
  std::int64_t top = -1, bottom = -1, left = -1, right = -1;
  std::int64_t height() const { return bottom - top + 1; }
  std::int64_t width() const { return right - left + 1; }
};

Box ink_box(const Bytes& image, std::int64_t rows, std::int64_t cols, int threshold = 128) {
  Box box;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      if (image[static_cast<std::size_t>(r * cols + c)] >= threshold) {
        if (box.top < 0) box.top = r;
        box.bottom = r;
        box.left = box.left < 0 ? c : std::min(box.left, c);
        box.right = std::max(box.right, c);
      }
  return box;
}

// The ink-weighted mean column of row r.
double row_centroid(const Bytes& image, std::int64_t cols, std::int64_t r) {
  double mass = 0, moment = 0;
  for (std::int64_t c = 0; c < cols; ++c) {
    const double value = image[static_cast<std::size_t>(r * cols + c)];
    mass += value;
    moment += value * static_cast<double>(c);
  }
  return moment / mass;
}

const nn::AffineDistortion kNoDistortion{
    .translate_x_max = 0, .translate_y_max = 0, .scale_max = 0, .squeeze_max = 0, .shear_max = 0};

TEST(Distort, IdentityMapReturnsTheImageExactly) {
  for (const auto& [rows, cols] : {std::pair<std::int64_t, std::int64_t>{28, 28}, {9, 14}, {1, 1}, {1, 5}}) {
    const Bytes image = dense_image(rows, cols);
    EXPECT_EQ(mapped(image, rows, cols, nn::AffineMap{}), image) << rows << "x" << cols;
    EXPECT_EQ(distorted(image, rows, cols, kNoDistortion, 5), image) << rows << "x" << cols;
  }
}

TEST(Distort, WholePixelTranslationMovesTheImageExactly) {
  const std::int64_t rows = 9, cols = 14;  // not square: rows and columns cannot be confused
  const Bytes image = dense_image(rows, cols);
  for (const auto& [dx, dy] : {std::pair<std::int64_t, std::int64_t>{3, 0}, {0, -2}, {-4, 1}, {2, 5}, {14, 0}}) {
    const Bytes out = mapped(image, rows, cols,
                             nn::AffineMap{.tx = static_cast<double>(dx), .ty = static_cast<double>(dy)});
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::int64_t from_r = r - dy, from_c = c - dx;  // right by dx, down by dy
        const bool inside = from_r >= 0 && from_r < rows && from_c >= 0 && from_c < cols;
        ASSERT_EQ(out[static_cast<std::size_t>(r * cols + c)],
                  inside ? image[static_cast<std::size_t>(from_r * cols + from_c)] : 0)
            << "shift (" << dx << ", " << dy << ") at row " << r << " column " << c;
      }
  }
}

// A map with every coefficient in play: x' = -y, y' = x turns the image a quarter clockwise (y is
// down) about its centre, taking pixel centres to pixel centres, so out[r][c] = in[n - 1 - c][r].
TEST(Distort, AQuarterTurnClockwisePermutesThePixelsExactly) {
  for (const std::int64_t side : {28, 7}) {
    const Bytes image = dense_image(side, side);
    const Bytes out = mapped(image, side, side, nn::AffineMap{.a = 0, .b = -1, .c = 1, .d = 0});
    for (std::int64_t r = 0; r < side; ++r)
      for (std::int64_t c = 0; c < side; ++c)
        ASSERT_EQ(out[static_cast<std::size_t>(r * side + c)], image[static_cast<std::size_t>((side - 1 - c) * side + r)])
            << side << "x" << side << " row " << r << " column " << c;
  }
}

TEST(Distort, FractionalTranslationInterpolatesBilinearlyAndRoundsHalfUp) {
  // Half a pixel right: each pixel is the mean of itself and its left neighbour (0 outside).
  EXPECT_EQ(mapped(Bytes{10, 21, 40, 255}, 1, 4, nn::AffineMap{.tx = 0.5}), (Bytes{5, 16, 31, 148}));
  // A quarter pixel down: 3/4 of the pixel above, 1/4 of the pixel itself.
  EXPECT_EQ(mapped(Bytes{0, 100, 200, 40}, 4, 1, nn::AffineMap{.ty = 0.25}), (Bytes{0, 75, 175, 80}));
  // Both at once, on a 2x2 block: output (1, 1) samples (0.5, 0.5), the mean of all four.
  EXPECT_EQ(mapped(Bytes{10, 20, 30, 41}, 2, 2, nn::AffineMap{.tx = 0.5, .ty = 0.5}),
            (Bytes{3, 8, 10, 25}));  // 10/4 = 2.5, 30/4 = 7.5, 40/4 = 10, 101/4 = 25.25
}

TEST(Distort, HorizontalShearMovesTopAndBottomRowsOppositeWays) {
  // A vertical bar through the centre column of a 15x15 image; x' = x + 0.25 y puts row y's ink at
  // 7 + 0.25 (y - 7): the top row 1.75 columns left, the bottom row 1.75 right, the middle unmoved.
  const std::int64_t side = 15;
  const Bytes bar = block_image(side, side, 0, side, 7, 8);
  const Bytes out = mapped(bar, side, side, nn::AffineMap{.b = 0.25});
  for (std::int64_t r = 0; r < side; ++r)
    EXPECT_NEAR(row_centroid(out, side, r), 7 + 0.25 * static_cast<double>(r - 7), 0.01) << "row " << r;
  EXPECT_LT(row_centroid(out, side, 0), 7);
  EXPECT_GT(row_centroid(out, side, side - 1), 7);
}

TEST(Distort, ScaleAboveOneEnlargesTheInkBoundingBoxAndBelowOneShrinksIt) {
  const std::int64_t side = 28;
  const Bytes digit = block_image(side, side, 8, 20, 11, 17);  // 12 rows x 6 columns about the centre
  const Box before = ink_box(digit, side, side);
  ASSERT_EQ(before.height(), 12);
  ASSERT_EQ(before.width(), 6);
  for (const double s : {1.3, 0.7}) {
    const Box after = ink_box(mapped(digit, side, side, nn::AffineMap{.a = s, .d = s}), side, side);
    EXPECT_NEAR(after.height(), s * 12, 1) << "scale " << s;
    EXPECT_NEAR(after.width(), s * 6, 1) << "scale " << s;
    if (s > 1) {
      EXPECT_GT(after.height(), before.height());
      EXPECT_GT(after.width(), before.width());
    } else {
      EXPECT_LT(after.height(), before.height());
      EXPECT_LT(after.width(), before.width());
    }
  }
}

TEST(Distort, SqueezeCompressesOneAxisAndStretchesTheOther) {
  const std::int64_t side = 28;
  const Bytes digit = block_image(side, side, 8, 20, 8, 20);  // 12 x 12
  // q = 0.25: x times 1.25, y divided by 1.25, as random_affine composes it.
  const Box after = ink_box(mapped(digit, side, side, nn::AffineMap{.a = 1.25, .d = 1 / 1.25}), side, side);
  EXPECT_NEAR(after.width(), 15, 1);
  EXPECT_NEAR(after.height(), 9.6, 1);
}

TEST(Distort, RandomMapDrawsTranslationScaleSqueezeShearInThatOrder) {
  // Ranges all different, so a parameter drawn in another's place shows.
  const nn::AffineDistortion ranges{
      .translate_x_max = 1, .translate_y_max = 3, .scale_max = 0.2, .squeeze_max = 0.3, .shear_max = 0.5};
  for (std::uint64_t seed : {0u, 1u, 1998u}) {
    ag::Generator generator(seed), replay(seed);
    const nn::AffineMap map = nn::random_affine(ranges, generator);
    double w[5];
    for (double& value : w) value = 2 * replay.uniform() - 1;
    const double s = 1 + 0.2 * w[2], squeeze = 1 + 0.3 * w[3], h = 0.5 * w[4];
    EXPECT_DOUBLE_EQ(map.tx, 1 * w[0]);
    EXPECT_DOUBLE_EQ(map.ty, 3 * w[1]);
    EXPECT_DOUBLE_EQ(map.a, s * squeeze);
    EXPECT_DOUBLE_EQ(map.b, h * s / squeeze);
    EXPECT_EQ(map.c, 0);
    EXPECT_DOUBLE_EQ(map.d, s / squeeze);
    EXPECT_EQ(generator.next(), replay.next()) << "random_affine draws exactly five numbers";
  }
}

TEST(Distort, AZeroRangeStillDrawsSoTheOtherParametersDoNotMove) {
  const nn::AffineDistortion all{}, no_translation{.translate_x_max = 0, .translate_y_max = 0};
  ag::Generator first(3), second(3);
  const nn::AffineMap with = nn::random_affine(all, first), without = nn::random_affine(no_translation, second);
  EXPECT_EQ(without.tx, 0);
  EXPECT_EQ(without.ty, 0);
  EXPECT_EQ(without.a, with.a);
  EXPECT_EQ(without.b, with.b);
  EXPECT_EQ(without.d, with.d);
}

TEST(Distort, RandomMapsCoverTheirRangesAndNoMore) {
  const nn::AffineDistortion ranges{};
  ag::Generator generator(11);
  std::map<std::string, std::pair<double, double>> seen;  // parameter -> (lowest, highest)
  const auto note = [&](const std::string& name, double value) {
    const auto it = seen.try_emplace(name, value, value).first;
    it->second.first = std::min(it->second.first, value);
    it->second.second = std::max(it->second.second, value);
  };
  for (int i = 0; i < 2000; ++i) {
    const nn::AffineMap map = nn::random_affine(ranges, generator);
    // Recover the parameters: a d = s^2, a / d = (1 + q)^2, b / d = h.
    note("tx", map.tx);
    note("ty", map.ty);
    note("s - 1", std::sqrt(map.a * map.d) - 1);
    note("q", std::sqrt(map.a / map.d) - 1);
    note("h", map.b / map.d);
  }
  const std::map<std::string, double> limit{{"tx", 2}, {"ty", 2}, {"s - 1", 0.1}, {"q", 0.1}, {"h", 0.15}};
  for (const auto& [name, range] : seen) {
    const double max = limit.at(name);
    EXPECT_GE(range.first, -max - 1e-12) << name;
    EXPECT_LE(range.second, max + 1e-12) << name;
    EXPECT_LT(range.first, -0.95 * max) << name << " never comes near the bottom of its range";
    EXPECT_GT(range.second, 0.95 * max) << name << " never comes near the top of its range";
  }
}

TEST(Distort, SameSeedGivesTheSameBytesAndADifferentSeedOtherBytes) {
  const Bytes image = block_image(28, 28, 6, 22, 10, 18);
  const Bytes first = distorted(image, 28, 28, nn::AffineDistortion{}, 42);
  EXPECT_EQ(distorted(image, 28, 28, nn::AffineDistortion{}, 42), first);
  EXPECT_NE(first, image);
  for (std::uint64_t seed : {0u, 1u, 43u})
    EXPECT_NE(distorted(image, 28, 28, nn::AffineDistortion{}, seed), first) << "seed " << seed;
}

// A seed's bytes are part of the format of a run: a resumed or repeated training must see the same
// distortions. This pins them (FNV-1a of the bytes), so a change of draw order or arithmetic shows.
TEST(Distort, AKnownSeedGivesKnownBytes) {
  const Bytes image = dense_image(28, 28);
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (std::uint64_t seed = 0; seed < 20; ++seed)
    for (const std::uint8_t byte : distorted(image, 28, 28, nn::AffineDistortion{}, seed)) {
      hash ^= byte;
      hash *= 0x100000001b3ULL;
    }
  EXPECT_EQ(hash, 9401615578407170919ULL);
}

TEST(Distort, RejectsSingularMapsBadSizesAndBadRanges) {
  const Bytes image = dense_image(4, 4);
  Bytes out(16);
  EXPECT_THROW(nn::apply_affine(image.data(), 4, 4, nn::AffineMap{.a = 0}, out.data()), std::invalid_argument);
  EXPECT_THROW(nn::apply_affine(image.data(), 4, 4, nn::AffineMap{.a = 2, .b = 1, .c = 4, .d = 2}, out.data()),
               std::invalid_argument);
  EXPECT_THROW(nn::apply_affine(image.data(), 4, 4, nn::AffineMap{.tx = NAN}, out.data()), std::invalid_argument);
  EXPECT_THROW(nn::apply_affine(image.data(), 0, 4, nn::AffineMap{}, out.data()), std::invalid_argument);
  ag::Generator generator(0);
  for (const nn::AffineDistortion bad :
       {nn::AffineDistortion{.scale_max = 1}, nn::AffineDistortion{.squeeze_max = 1.5},
        nn::AffineDistortion{.shear_max = -0.1}, nn::AffineDistortion{.translate_x_max = INFINITY},
        nn::AffineDistortion{.translate_y_max = NAN}})
    EXPECT_THROW(nn::random_affine(bad, generator), std::invalid_argument);
}

// ---- DistortedPool ----

// n images of rows x cols, random bytes, label k % 10.
nn::MnistSplit random_split(std::int64_t n, std::int64_t rows, std::int64_t cols) {
  nn::MnistSplit split{.count = n, .rows = rows, .cols = cols, .images = {}, .labels = {}};
  ag::Generator generator(99);
  for (std::int64_t i = 0; i < n * rows * cols; ++i)
    split.images.push_back(static_cast<std::uint8_t>(generator.below(256)));
  for (std::int64_t k = 0; k < n; ++k) split.labels.push_back(static_cast<std::uint8_t>(k % 10));
  return split;
}

Bytes pool_image(const nn::DistortedPool& pool, std::int64_t entry) {
  Bytes out(static_cast<std::size_t>(pool.rows() * pool.cols()), 77);
  pool.image(entry, out.data());
  return out;
}

Bytes original(const nn::MnistSplit& split, std::int64_t k) {
  const std::int64_t pixels = split.rows * split.cols;
  return Bytes(split.images.begin() + k * pixels, split.images.begin() + (k + 1) * pixels);
}

TEST(DistortedPool, EntriesBelowNAreTheOriginalsByteForByteAndTheRestDistortionsOfThem) {
  const nn::MnistSplit split = random_split(30, 7, 6);
  const nn::DistortedPool pool(split, {.copies = 3, .passes = 4, .seed = 5});
  ASSERT_EQ(pool.originals(), 30);
  ASSERT_EQ(pool.pool_size(), 120);
  for (std::int64_t k = 0; k < 30; ++k) EXPECT_EQ(pool_image(pool, k), original(split, k)) << "entry " << k;
  for (std::int64_t k = 30; k < 120; ++k) {
    EXPECT_NE(pool_image(pool, k), original(split, k % 30)) << "entry " << k;
    EXPECT_NE(pool_image(pool, k), pool_image(pool, k < 90 ? k + 30 : k - 60)) << "entry " << k;
  }
  // With every range 0 a copy is its original again: the copies are distortions of the right one.
  const nn::DistortedPool undistorted(split, {.copies = 3, .passes = 1, .ranges = kNoDistortion});
  for (std::int64_t k = 30; k < 120; ++k) EXPECT_EQ(pool_image(undistorted, k), original(split, k % 30));
}

TEST(DistortedPool, AnEntrysImageDoesNotDependOnWhenOrWhereItIsMade) {
  const nn::MnistSplit split = random_split(20, 8, 8);
  const nn::DistortedPool pool(split, {.copies = 4, .passes = 5, .seed = 17});
  const std::int64_t size = pool.pool_size();
  std::vector<Bytes> forward;
  for (std::int64_t k = 0; k < size; ++k) forward.push_back(pool_image(pool, k));
  // Backwards, in the order of presentation, on two threads at once, and from a second pool with
  // the same seed but another schedule, as a resumed run would build it.
  for (std::int64_t k = size - 1; k >= 0; --k) EXPECT_EQ(pool_image(pool, k), forward[static_cast<std::size_t>(k)]);
  for (const std::int64_t k : pool.pass_entries(1)) EXPECT_EQ(pool_image(pool, k), forward[static_cast<std::size_t>(k)]);
  std::vector<Bytes> threaded(static_cast<std::size_t>(size));
  {
    std::jthread odd([&] {
      for (std::int64_t k = 1; k < size; k += 2) threaded[static_cast<std::size_t>(k)] = pool_image(pool, k);
    });
    for (std::int64_t k = (size - 1) / 2 * 2; k >= 0; k -= 2) threaded[static_cast<std::size_t>(k)] = pool_image(pool, k);
  }
  EXPECT_EQ(threaded, forward);
  const nn::DistortedPool resumed(split, {.copies = 4, .passes = 2, .seed = 17});
  for (std::int64_t k = size - 1; k >= 0; k -= 3) EXPECT_EQ(pool_image(resumed, k), forward[static_cast<std::size_t>(k)]);
  const nn::DistortedPool reseeded(split, {.copies = 4, .passes = 5, .seed = 18});
  EXPECT_NE(pool_image(reseeded, 20), forward[20]);
}

// Over the passes: how often each entry is presented, after checking every pass has N entries.
std::vector<int> presentation_counts(const nn::DistortedPool& pool) {
  std::vector<int> counts(static_cast<std::size_t>(pool.pool_size()), 0);
  for (std::int64_t pass = 0; pass < pool.passes(); ++pass) {
    const std::span<const std::int64_t> entries = pool.pass_entries(pass);
    EXPECT_EQ(static_cast<std::int64_t>(entries.size()), pool.originals()) << "pass " << pass;
    for (std::int64_t position = 0; position < static_cast<std::int64_t>(entries.size()); ++position) {
      const std::int64_t entry = entries[static_cast<std::size_t>(position)];
      EXPECT_EQ(pool.entry(pass, position), entry);
      EXPECT_TRUE(entry >= 0 && entry < pool.pool_size()) << entry;
      ++counts[static_cast<std::size_t>(entry)];
    }
  }
  return counts;
}

TEST(DistortedPool, TwentyPassesPresentEveryEntryExactlyTwice) {
  const nn::MnistSplit split = random_split(50, 2, 2);
  const nn::DistortedPool pool(split, {.copies = 9, .passes = 20, .seed = 1});
  ASSERT_EQ(pool.pool_size(), 500);
  const std::vector<int> counts = presentation_counts(pool);
  for (std::size_t k = 0; k < counts.size(); ++k) EXPECT_EQ(counts[k], 2) << "entry " << k;
  // Shuffled: neither in pool order nor originals first.
  const std::span<const std::int64_t> first = pool.pass_entries(0);
  EXPECT_FALSE(std::is_sorted(first.begin(), first.end()));
  EXPECT_GT(std::count_if(first.begin(), first.end(), [](std::int64_t k) { return k >= 50; }), 25);
}

TEST(DistortedPool, ThePapersPoolHas600000EntriesEachShownTwiceIn20PassesOf60000) {
  const nn::MnistSplit split = random_split(60000, 1, 1);
  const nn::DistortedPool pool(split);  // the defaults are the paper's: 9 copies, 20 passes
  EXPECT_EQ(pool.pool_size(), 600000);
  EXPECT_EQ(pool.passes(), 20);
  const std::vector<int> counts = presentation_counts(pool);
  EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int count) { return count == 2; }));
}

TEST(DistortedPool, PassesThatDoNotCoverThePoolEvenlyShowNoEntryTwiceMoreThanAnother) {
  const nn::MnistSplit split = random_split(50, 2, 2);
  for (const std::int64_t passes : {3, 25, 0}) {
    const nn::DistortedPool pool(split, {.copies = 9, .passes = passes, .seed = 2});
    const std::vector<int> counts = presentation_counts(pool);
    const auto [low, high] = std::minmax_element(counts.begin(), counts.end());
    EXPECT_LE(*high - *low, 1) << passes << " passes";
    EXPECT_EQ(*high, (passes * 50 + 499) / 500) << passes << " passes";
  }
}

TEST(DistortedPool, TheOrderIsFixedBySeed) {
  const nn::MnistSplit split = random_split(50, 2, 2);
  const nn::DistortedPool pool(split, {.seed = 7}), same(split, {.seed = 7}), other(split, {.seed = 8});
  for (std::int64_t pass = 0; pass < 20; ++pass) {
    const auto a = pool.pass_entries(pass), b = same.pass_entries(pass), c = other.pass_entries(pass);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "pass " << pass;
    EXPECT_FALSE(std::equal(a.begin(), a.end(), c.begin(), c.end())) << "pass " << pass;
  }
}

TEST(DistortedPool, LabelsFollowTheOriginal) {
  const nn::MnistSplit split = random_split(23, 3, 3);
  const nn::DistortedPool pool(split, {.copies = 4, .passes = 1});
  for (std::int64_t k = 0; k < pool.pool_size(); ++k)
    EXPECT_EQ(pool.label(k), split.labels[static_cast<std::size_t>(k % 23)]) << "entry " << k;
}

TEST(DistortedPool, FillBatchNormalisesTheEntriesImagesWithTheirLabels) {
  const nn::MnistSplit split = random_split(12, 5, 4);
  const nn::DistortedPool pool(split, {.copies = 2, .passes = 3, .seed = 4});
  const std::vector<std::int64_t> entries{30, 2, 17, 30, 11};
  for (const ag::DType dtype : {ag::DType::Float32, ag::DType::Float64}) {
    ag::Tensor images;
    std::vector<std::int64_t> targets;
    const nn::BatchOptions options{.mean = 0.25, .stddev = 0.5, .dtype = dtype};
    nn::fill_batch(images, targets, pool, entries, options);
    ASSERT_EQ(images.shape(), (ag::Shape{5, 1, 5, 4}));
    ASSERT_EQ(images.dtype(), dtype);
    for (std::size_t b = 0; b < entries.size(); ++b) {
      EXPECT_EQ(targets[b], pool.label(entries[b]));
      const Bytes image = pool_image(pool, entries[b]);
      for (std::size_t i = 0; i < image.size(); ++i) {
        const double expected = (image[i] / 255.0 - 0.25) / 0.5;
        const double tolerance = dtype == ag::DType::Float32 ? 1e-6 : 1e-15;
        EXPECT_NEAR(images.at(static_cast<std::int64_t>(b * image.size() + i)), expected, tolerance) << b << "," << i;
      }
    }
  }
}

TEST(DistortedPool, RejectsBadOptionsPassesPositionsAndEntries) {
  const nn::MnistSplit split = random_split(10, 3, 3);
  EXPECT_THROW(nn::DistortedPool(split, {.copies = -1}), std::invalid_argument);
  EXPECT_THROW(nn::DistortedPool(split, {.passes = -1}), std::invalid_argument);
  EXPECT_THROW(nn::DistortedPool(split, {.ranges = {.scale_max = 2}}), std::invalid_argument);
  nn::MnistSplit broken = split;
  broken.labels.pop_back();
  EXPECT_THROW(nn::DistortedPool(broken, {}), std::invalid_argument);
  const nn::DistortedPool pool(split, {.copies = 1, .passes = 2});
  Bytes out(9);
  EXPECT_THROW(pool.pass_entries(2), std::invalid_argument);
  EXPECT_THROW(pool.entry(0, 10), std::invalid_argument);
  EXPECT_THROW(pool.entry(-1, 0), std::invalid_argument);
  EXPECT_THROW(pool.image(20, out.data()), std::invalid_argument);
  EXPECT_THROW(pool.label(-1), std::invalid_argument);
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  const std::vector<std::int64_t> outside{0, 20};
  EXPECT_THROW(nn::fill_batch(images, targets, pool, outside), std::invalid_argument);
  const std::vector<std::int64_t> inside{0, 19};
  EXPECT_THROW(nn::fill_batch(images, targets, pool, inside, {.max_shift = 1}), std::invalid_argument)
      << "shifts on top need a generator, as in the MNIST fill_batch";
}

// The default ranges on real digits: what a distortion carries past the border of the 28x28 field
// is measured on a 40x40 canvas around it, whose middle must be the 28x28 result exactly (the map
// is about the centre of either).
TEST(Distort, RealDigitsKeepAlmostAllTheirInkInTheField) {
  if (!std::filesystem::exists("data/mnist")) GTEST_SKIP() << "no data/mnist (tools/fetch-mnist)";
  nn::MnistSplit test_set;
  try {
    test_set = nn::load_mnist("data/mnist", nn::Split::Test);
  } catch (const nn::DataError& error) {
    GTEST_SKIP() << error.what();
  }
  ASSERT_EQ(test_set.rows, 28);
  ASSERT_EQ(test_set.cols, 28);
  const std::int64_t n = 2000, side = 28, canvas = 40, margin = 6;
  double total_ink = 0, lost_ink = 0;
  std::int64_t losing_a_twentieth = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    const Bytes digit = original(test_set, k);
    Bytes padded(static_cast<std::size_t>(canvas * canvas), 0);
    for (std::int64_t r = 0; r < side; ++r)
      for (std::int64_t c = 0; c < side; ++c)
        padded[static_cast<std::size_t>((r + margin) * canvas + c + margin)] = digit[static_cast<std::size_t>(r * side + c)];
    const auto seed = static_cast<std::uint64_t>(k);
    const Bytes in_field = distorted(digit, side, side, nn::AffineDistortion{}, seed);
    const Bytes on_canvas = distorted(padded, canvas, canvas, nn::AffineDistortion{}, seed);
    double ink = 0, inside = 0;
    for (std::int64_t r = 0; r < canvas; ++r)
      for (std::int64_t c = 0; c < canvas; ++c) {
        const std::uint8_t value = on_canvas[static_cast<std::size_t>(r * canvas + c)];
        ink += value;
        const bool middle = r >= margin && r < margin + side && c >= margin && c < margin + side;
        if (!middle) continue;
        inside += value;
        ASSERT_EQ(value, in_field[static_cast<std::size_t>((r - margin) * side + c - margin)])
            << "test image " << k << " row " << r - margin << " column " << c - margin;
      }
    total_ink += ink;
    lost_ink += ink - inside;
    if (ink - inside > ink / 20) ++losing_a_twentieth;
  }
  EXPECT_LT(lost_ink / total_ink, 0.0025) << "of all ink is carried past the border";
  EXPECT_LT(losing_a_twentieth, n / 100) << "of " << n << " digits lose more than 5% of their ink";
}

}  // namespace
