// Tests for the MNIST IDX reader, the split loader and the batching helpers. Every file is generated
// here into a fresh temporary directory; the real data set is read only if tools/fetch-mnist has run.
#include "models/data/mnist.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "tests/fuzz/targets.hpp"

namespace {

using Bytes = std::vector<std::uint8_t>;

void append_u32_big_endian(Bytes& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(value >> shift));
}

Bytes idx_file(std::uint32_t magic, const std::vector<std::uint32_t>& sizes, const Bytes& payload) {
  Bytes out;
  append_u32_big_endian(out, magic);
  for (std::uint32_t size : sizes) append_u32_big_endian(out, size);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Bytes images_file(std::uint32_t count, std::uint32_t rows, std::uint32_t cols, const Bytes& pixels) {
  return idx_file(0x00000803, {count, rows, cols}, pixels);
}

Bytes labels_file(const Bytes& labels) {
  return idx_file(0x00000801, {static_cast<std::uint32_t>(labels.size())}, labels);
}

Bytes counting_bytes(std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(i * 7 % 256);
  return out;
}

class MnistFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "mnist_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write_raw(const std::string& name, const Bytes& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good());
    return path;
  }
  std::string write_gzip(const std::string& name, const Bytes& bytes) {
    const std::string path = (dir_ / name).string();
    gzFile out = gzopen(path.c_str(), "wb");
    EXPECT_NE(out, nullptr);
    if (!bytes.empty()) {
      EXPECT_EQ(gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size())),
                static_cast<int>(bytes.size()));
    }
    EXPECT_EQ(gzclose(out), Z_OK);
    return path;
  }

  std::filesystem::path dir_;
};

/// The message of the DataError `fn` throws, or a failure if it throws nothing or something else.
template <class Fn> std::string data_error_message(Fn&& fn) {
  try {
    fn();
  } catch (const nn::DataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected nn::DataError, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected nn::DataError, nothing was thrown";
  return {};
}

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\"\n  does not contain\n\"" << part << "\"";
}

// ---- IDX reader: valid files ----

TEST_F(MnistFilesTest, ReadsRawImages) {
  const Bytes pixels = counting_bytes(3 * 2 * 4);
  const nn::IdxImages images = nn::read_idx_images(write_raw("images", images_file(3, 2, 4, pixels)));
  EXPECT_EQ(images.count, 3);
  EXPECT_EQ(images.rows, 2);
  EXPECT_EQ(images.cols, 4);
  EXPECT_EQ(images.pixels, pixels);
}

TEST_F(MnistFilesTest, ReadsGzipImagesAndLabels) {
  const Bytes pixels = counting_bytes(5 * 28 * 28);
  const nn::IdxImages images =
      nn::read_idx_images(write_gzip("images.gz", images_file(5, 28, 28, pixels)));
  EXPECT_EQ(images.count, 5);
  EXPECT_EQ(images.pixels, pixels);
  const Bytes labels{3, 1, 4, 1, 5, 9, 2, 6};
  EXPECT_EQ(nn::read_idx_labels(write_gzip("labels.gz", labels_file(labels))), labels);
}

TEST_F(MnistFilesTest, ReadsGzipLargerThanOneChunk) {
  // 3 MiB of payload crosses the reader's 1 MiB chunks.
  const Bytes pixels = counting_bytes(4096 * 28 * 28);
  const nn::IdxImages images =
      nn::read_idx_images(write_gzip("images.gz", images_file(4096, 28, 28, pixels)));
  EXPECT_EQ(images.pixels, pixels);
}

TEST_F(MnistFilesTest, DetectsGzipByContentNotByName) {
  const Bytes labels{0, 9, 8};
  EXPECT_EQ(nn::read_idx_labels(write_gzip("labels-no-suffix", labels_file(labels))), labels);
  EXPECT_EQ(nn::read_idx_labels(write_raw("raw-labels.gz", labels_file(labels))), labels);
}

// ---- IDX reader: hostile or broken files ----

TEST_F(MnistFilesTest, RejectsTruncatedImages) {
  const std::string path = write_raw("short", images_file(5, 28, 28, counting_bytes(100)));
  const std::string message = data_error_message([&] { nn::read_idx_images(path); });
  EXPECT_TRUE(Contains(message, path + ": truncated"));
  EXPECT_TRUE(Contains(message, "5 images of 28x28 (3920 bytes)"));
  EXPECT_TRUE(Contains(message, "has 100 bytes after the header"));
}

TEST_F(MnistFilesTest, RejectsTruncatedGzipPayload) {
  const std::string path = write_gzip("short.gz", images_file(5, 28, 28, counting_bytes(100)));
  const std::string message = data_error_message([&] { nn::read_idx_images(path); });
  EXPECT_TRUE(Contains(message, path + ": truncated"));
  EXPECT_TRUE(Contains(message, "has 100 bytes after the header"));
}

TEST_F(MnistFilesTest, RejectsCutOffGzipStream) {
  Bytes whole = counting_bytes(0);
  const std::string full = write_gzip("full.gz", images_file(50, 28, 28, counting_bytes(50 * 784)));
  std::ifstream in(full, std::ios::binary);
  whole.assign(std::istreambuf_iterator<char>(in), {});
  whole.resize(whole.size() / 2);  // the compressed stream stops mid-way
  const std::string path = write_raw("cut.gz", whole);
  const std::string message = data_error_message([&] { nn::read_idx_images(path); });
  EXPECT_TRUE(Contains(message, path + ": truncated"));
}

TEST_F(MnistFilesTest, RejectsCorruptGzip) {
  Bytes bytes{0x1f, 0x8b};
  const Bytes junk = counting_bytes(200);
  bytes.insert(bytes.end(), junk.begin(), junk.end());
  const std::string path = write_raw("corrupt.gz", bytes);
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(path); }), path + ": "));
}

TEST_F(MnistFilesTest, RejectsTruncatedHeader) {
  const std::string path = write_raw("tiny", Bytes{0, 0, 8, 3, 0, 0});
  const std::string message = data_error_message([&] { nn::read_idx_images(path); });
  EXPECT_TRUE(Contains(message, path + ": truncated"));
  EXPECT_TRUE(Contains(message, "inside the header (6 of 16 bytes)"));
  const std::string empty = write_raw("empty", Bytes{});
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_labels(empty); }), empty + ": truncated: the file has 0 bytes, too few for an IDX header"));
}

TEST_F(MnistFilesTest, RejectsWrongMagic) {
  const std::string path = write_raw("png", idx_file(0x89504e47, {1, 1, 1}, {0}));
  const std::string message = data_error_message([&] { nn::read_idx_images(path); });
  EXPECT_TRUE(Contains(message, path + ": bad magic number 0x89504e47"));
  EXPECT_TRUE(Contains(message, "0x00000803"));
  // Right dimension count but signed 32-bit ints (type 0x0c) instead of bytes.
  const std::string ints = write_raw("ints", idx_file(0x00000c01, {1}, {0, 0, 0, 1}));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_labels(ints); }), ints + ": bad magic number 0x00000c01"));
}

TEST_F(MnistFilesTest, RejectsWrongDimensionCount) {
  // A labels file where images are expected, and the other way round.
  const std::string labels = write_raw("labels", labels_file({1, 2}));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(labels); }), labels + ": wrong number of dimensions: magic 0x00000801 says 1, images need 3"));
  const std::string images = write_raw("images", images_file(1, 1, 1, {7}));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_labels(images); }), images + ": wrong number of dimensions: magic 0x00000803 says 3, labels need 1"));
}

TEST_F(MnistFilesTest, RejectsZeroDimension) {
  const std::string path = write_raw("zero", images_file(4, 0, 28, {}));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(path); }), path + ": dimension 1 of the header is 0"));
}

TEST_F(MnistFilesTest, RejectsOversizedImageSide) {
  const std::string path = write_raw("huge", images_file(1u << 31, 1u << 31, 1u << 31, counting_bytes(64)));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(path); }), path + ": image size 2147483648x2147483648 exceeds the limit of 4096"));
}

TEST_F(MnistFilesTest, ImpossibleClaimedSizeIsReportedAsTruncation) {
  // 4,294,967,295 images of 4096x4096 claim 2^56 bytes; the files hold 64.
  const Bytes bytes = images_file(0xffffffffu, 4096, 4096, counting_bytes(64));
  for (const std::string& path : {write_raw("raw", bytes), write_gzip("gz", bytes)})
    EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(path); }),
                         path + ": truncated: header says 4294967295 images of 4096x4096 "
                                "(72057594021150720 bytes)"));
}

/// Reads `path` with the address space capped at its current size + 64 MiB, then exits: 0 with the
/// message on stderr for a DataError, 2 if an allocation failed. Meant to run in a death test's child.
[[noreturn]] void read_images_with_little_memory(const std::string& path) {
  fuzz::exit_with_read_outcome<nn::DataError>(std::size_t{64} << 20, [&] { nn::read_idx_images(path); });
}

TEST_F(MnistFilesTest, LargeClaimedCountNeverAllocatesTheClaim) {
  // A million 28x28 images claim 784 MB, which an overcommitting kernel would hand out; the reader
  // must notice the file is short without asking for it. The child process can grow by 64 MiB only.
  const Bytes bytes = images_file(1000000, 28, 28, counting_bytes(64));
  for (const std::string& path : {write_raw("raw", bytes), write_gzip("gz", bytes)})
    EXPECT_EXIT(read_images_with_little_memory(path), ::testing::ExitedWithCode(0),
                "truncated: header says 1000000 images of 28x28")
        << path;
}

TEST_F(MnistFilesTest, RejectsTrailingBytes) {
  const Bytes bytes = images_file(2, 3, 3, counting_bytes(2 * 9 + 5));
  const std::string raw = write_raw("raw", bytes);
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(raw); }), raw + ": trailing bytes: header says 2 images of 3x3 (18 bytes) but the file "
                              "has 23 bytes after the header"));
  const std::string gz = write_gzip("gz", bytes);
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(gz); }), gz + ": trailing bytes: header says 2 images of 3x3 (18 bytes) but the "
                             "decompressed data has more than 18 bytes"));
  const std::string labels = write_raw("labels", idx_file(0x00000801, {2}, {1, 2, 3}));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_labels(labels); }), labels + ": trailing bytes: header says 2 labels (2 bytes)"));
}

TEST_F(MnistFilesTest, RejectsOutOfRangeLabel) {
  const std::string path = write_raw("train-labels-idx1-ubyte", labels_file({1, 2, 3, 4, 5, 11, 12}));
  EXPECT_EQ(data_error_message([&] { nn::read_idx_labels(path); }),
            path + ": label 11 at index 5 is out of range [0, 10)");
  // The class count is a parameter.
  const std::string three = write_raw("three", labels_file({0, 1, 2, 3}));
  EXPECT_EQ(data_error_message([&] { nn::read_idx_labels(three, 3); }),
            three + ": label 3 at index 3 is out of range [0, 3)");
  EXPECT_EQ(nn::read_idx_labels(three, 4), (Bytes{0, 1, 2, 3}));
}

TEST_F(MnistFilesTest, RejectsMissingFileAndDirectory) {
  const std::string missing = (dir_ / "nope").string();
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(missing); }), missing + ": cannot open: No such file or directory"));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::read_idx_images(dir_.string()); }), dir_.string() + ": is a directory"));
}

// ---- Finding and loading a split ----

TEST_F(MnistFilesTest, FindsEverySpelling) {
  struct Spelling {
    std::string images, labels;
    bool gzip;
  };
  const std::vector<Spelling> spellings{
      {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", false},
      {"train-images.idx3-ubyte", "train-labels.idx1-ubyte", false},
      {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", true},
      {"train-images.idx3-ubyte.gz", "train-labels.idx1-ubyte.gz", true},
  };
  const Bytes pixels = counting_bytes(2 * 28 * 28);
  for (const Spelling& spelling : spellings) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directory(dir_);
    const Bytes images = images_file(2, 28, 28, pixels), labels = labels_file({7, 2});
    if (spelling.gzip) {
      write_gzip(spelling.images, images);
      write_gzip(spelling.labels, labels);
    } else {
      write_raw(spelling.images, images);
      write_raw(spelling.labels, labels);
    }
    const nn::MnistFiles found = nn::find_mnist_files(dir_.string(), nn::Split::Train);
    EXPECT_EQ(std::filesystem::path(found.images).filename(), spelling.images);
    EXPECT_EQ(std::filesystem::path(found.labels).filename(), spelling.labels);
    const nn::MnistSplit split = nn::load_mnist(dir_.string(), nn::Split::Train);
    EXPECT_EQ(split.count, 2);
    EXPECT_EQ(split.images, pixels);
    EXPECT_EQ(split.labels, (Bytes{7, 2}));
  }
}

TEST_F(MnistFilesTest, PrefersRawOverGzipAndFindsTestSplit) {
  write_raw("t10k-images-idx3-ubyte", images_file(1, 1, 1, {1}));
  write_gzip("t10k-images-idx3-ubyte.gz", images_file(1, 1, 1, {2}));
  write_raw("t10k-labels.idx1-ubyte", labels_file({4}));
  const nn::MnistFiles found = nn::find_mnist_files(dir_.string(), nn::Split::Test);
  EXPECT_EQ(found.images, (dir_ / "t10k-images-idx3-ubyte").string());
  EXPECT_EQ(found.labels, (dir_ / "t10k-labels.idx1-ubyte").string());
}

TEST_F(MnistFilesTest, ListsEveryTriedPathWhenNoFileExists) {
  const std::string message =
      data_error_message([&] { nn::find_mnist_files(dir_.string(), nn::Split::Train); });
  EXPECT_TRUE(Contains(message, dir_.string() + ": no MNIST training images file; tried "));
  const std::filesystem::path absolute = std::filesystem::absolute(dir_);
  for (const char* name : {"train-images-idx3-ubyte", "train-images.idx3-ubyte",
                           "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte.gz"})
    EXPECT_TRUE(Contains(message, (absolute / name).string())) << name;
  EXPECT_EQ(message.find('\n'), std::string::npos);

  // Images present, labels missing: the labels' candidates are listed.
  write_raw("t10k-images-idx3-ubyte", images_file(1, 1, 1, {1}));
  const std::string labels_message =
      data_error_message([&] { nn::load_mnist(dir_.string(), nn::Split::Test); });
  EXPECT_TRUE(Contains(labels_message, "no MNIST test labels file; tried "));
  EXPECT_TRUE(Contains(labels_message, (absolute / "t10k-labels.idx1-ubyte.gz").string()));
}

TEST_F(MnistFilesTest, RejectsImageAndLabelCountsThatDisagree) {
  write_raw("train-images-idx3-ubyte", images_file(3, 1, 1, {1, 2, 3}));
  const std::string labels = write_raw("train-labels-idx1-ubyte", labels_file({1, 2}));
  EXPECT_TRUE(Contains(data_error_message([&] { nn::load_mnist(dir_.string(), nn::Split::Train); }), labels + ": has 2 labels but " + (dir_ / "train-images-idx3-ubyte").string() +
                        " has 3 images"));
}

// ---- Batching ----

/// count images of rows x cols whose pixel i of image n is (n * 31 + i * 7) % 256, labels n % 10.
nn::MnistSplit synthetic_split(std::int64_t count, std::int64_t rows, std::int64_t cols) {
  nn::MnistSplit split{.count = count, .rows = rows, .cols = cols, .images = {}, .labels = {}};
  for (std::int64_t n = 0; n < count; ++n) {
    for (std::int64_t i = 0; i < rows * cols; ++i)
      split.images.push_back(static_cast<std::uint8_t>((n * 31 + i * 7) % 256));
    split.labels.push_back(static_cast<std::uint8_t>(n % 10));
  }
  return split;
}

TEST(MnistBatch, NormalisesChosenExamplesInOrder) {
  const nn::MnistSplit data = synthetic_split(6, 4, 5);
  const std::vector<std::int64_t> indices{4, 0, 5};
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  nn::fill_batch(images, targets, data, indices,
                 nn::BatchOptions{.mean = 0.25, .stddev = 0.5, .dtype = ag::DType::Float64});
  ASSERT_EQ(images.shape(), (ag::Shape{3, 1, 4, 5}));
  ASSERT_EQ(images.dtype(), ag::DType::Float64);
  EXPECT_EQ(targets, (std::vector<std::int64_t>{4, 0, 5}));
  for (std::int64_t b = 0; b < 3; ++b)
    for (std::int64_t i = 0; i < 20; ++i) {
      const double pixel = data.images[static_cast<std::size_t>(indices[b] * 20 + i)];
      EXPECT_DOUBLE_EQ(images.at(b * 20 + i), (pixel / 255.0 - 0.25) / 0.5) << b << "," << i;
    }
}

// fill_batch computes pixels by a vectorised multiply-add when that gives every value of the
// formula exactly, and by a table of the 256 values otherwise, row by row around the shift: either
// way every pixel value, at every shift, must come out as the formula's, bit for bit. (Of the
// normalisations below, float32 takes the multiply-add for all but (0.2, 0.7); float64 the table.)
template <class T>
void expect_pixels_equal_the_formula(double mean, double stddev) {
  const nn::MnistSplit data = synthetic_split(3, 28, 28);  // every byte value occurs
  const std::vector<std::int64_t> indices{2, 0, 1, 2, 1, 0, 2};
  const nn::BatchOptions options{.mean = mean, .stddev = stddev, .dtype = ag::dtype_of<T>()};
  for (std::int64_t shift = -3; shift <= 3; ++shift) {
    std::vector<nn::Shift> shifts;
    for (std::int64_t b = 0; b < 7; ++b) shifts.push_back({.dy = (b % 3) - 1, .dx = shift + b % 2});
    ag::Tensor images;
    std::vector<std::int64_t> targets;
    nn::fill_batch(images, targets, data, indices, options, shifts);
    ASSERT_EQ(images.dtype(), ag::dtype_of<T>());
    const T* out = images.data<T>();
    for (std::int64_t b = 0; b < 7; ++b)
      for (std::int64_t r = 0; r < 28; ++r)
        for (std::int64_t c = 0; c < 28; ++c) {
          const std::int64_t from_r = r - shifts[b].dy, from_c = c - shifts[b].dx;
          const bool inside = from_r >= 0 && from_r < 28 && from_c >= 0 && from_c < 28;
          const double pixel =
              inside ? data.images[static_cast<std::size_t>(indices[b] * 784 + from_r * 28 + from_c)]
                     : 0;
          ASSERT_EQ(out[(b * 28 + r) * 28 + c], static_cast<T>((pixel / 255.0 - mean) / stddev))
              << "mean " << mean << " stddev " << stddev << " example " << b << " row " << r
              << " column " << c << " shift " << shift;
        }
  }
}

TEST(MnistBatch, PixelsEqualTheFormulaAtEveryShiftForEveryNormalisationAndDtype) {
  for (const auto& [mean, stddev] :
       {std::pair{0.1307, 0.3081}, {0.5, 0.5}, {0.0, 1.0}, {0.2, 0.7}, {0.45, 0.226}}) {
    expect_pixels_equal_the_formula<float>(mean, stddev);
    expect_pixels_equal_the_formula<double>(mean, stddev);
  }
}

TEST(MnistBatch, DefaultNormalisationMapsBlackAndWhite) {
  nn::MnistSplit data{.count = 1, .rows = 1, .cols = 2, .images = {0, 255}, .labels = {3}};
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  const std::vector<std::int64_t> first{0};
  nn::fill_batch(images, targets, data, first);
  EXPECT_EQ(images.dtype(), ag::DType::Float32);
  EXPECT_NEAR(images.at(0), -0.1307 / 0.3081, 1e-6);  // -0.4242
  EXPECT_NEAR(images.at(1), (1 - 0.1307) / 0.3081, 1e-6);  // 2.8215
}

TEST(MnistBatch, ReusesTheCallersTensorOnlyWhenShapeFitsAndNobodyElseHoldsIt) {
  const nn::MnistSplit data = synthetic_split(8, 28, 28);
  ag::Tensor images = ag::Tensor::zeros({2, 1, 28, 28}, ag::DType::Float64);
  std::vector<std::int64_t> targets;
  const void* buffer = images.raw_data();
  const std::vector<std::int64_t> two{1, 2}, three{1, 2, 3};
  nn::fill_batch(images, targets, data, two);
  EXPECT_EQ(images.raw_data(), buffer);
  EXPECT_EQ(images.dtype(), ag::DType::Float64);  // a reused tensor keeps its dtype

  const ag::Tensor still_in_use = images;  // e.g. saved by last step's graph
  const std::vector<double> before = still_in_use.to_vector();
  const std::vector<std::int64_t> other{5, 6};
  nn::fill_batch(images, targets, data, other);
  EXPECT_NE(images.raw_data(), buffer);
  EXPECT_EQ(still_in_use.to_vector(), before);

  nn::fill_batch(images, targets, data, three);
  EXPECT_EQ(images.shape(), (ag::Shape{3, 1, 28, 28}));
  EXPECT_EQ(targets.size(), 3u);
}

TEST(MnistBatch, RejectsBadIndicesAndMissingGenerator) {
  const nn::MnistSplit data = synthetic_split(3, 2, 2);
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  const std::vector<std::int64_t> past_end{0, 3}, negative{-1};
  EXPECT_THROW(nn::fill_batch(images, targets, data, past_end), std::invalid_argument);
  EXPECT_THROW(nn::fill_batch(images, targets, data, negative), std::invalid_argument);
  const std::vector<std::int64_t> ok{0};
  EXPECT_THROW(nn::fill_batch(images, targets, data, ok, nn::BatchOptions{.max_shift = 1}),
               std::invalid_argument);
  nn::MnistSplit inconsistent = data;
  inconsistent.images.pop_back();  // a hand-made split whose sizes disagree is refused, not overrun
  EXPECT_THROW(nn::fill_batch(images, targets, inconsistent, ok), std::invalid_argument);
}

TEST(MnistBatch, ShiftMovesTheWholeImageByAtMostMaxShift) {
  // An all-white 8x8 image: after a shift by (dy, dx) the white part is exactly the rectangle
  // rows [max(dy,0), 8+min(dy,0)) x cols [max(dx,0), 8+min(dx,0)), the rest is background.
  constexpr int kSide = 8, kShift = 2;
  nn::MnistSplit data{.count = 1, .rows = kSide, .cols = kSide,
                      .images = std::vector<std::uint8_t>(kSide * kSide, 255), .labels = {0}};
  const std::vector<std::int64_t> batch(50, 0);
  ag::Generator generator(7);
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  nn::fill_batch(images, targets, data, batch,
                 nn::BatchOptions{.mean = 0, .stddev = 1, .max_shift = kShift}, &generator);
  std::set<std::pair<int, int>> offsets_seen;
  for (std::int64_t b = 0; b < 50; ++b) {
    // The white part's bounding box gives the offset; it must be filled completely.
    int top = kSide, bottom = -1, left = kSide, right = -1, white = 0;
    for (int r = 0; r < kSide; ++r)
      for (int c = 0; c < kSide; ++c) {
        const double v = images.at(b * kSide * kSide + r * kSide + c);
        if (v == 1.0) {
          top = std::min(top, r), bottom = std::max(bottom, r);
          left = std::min(left, c), right = std::max(right, c);
          ++white;
        } else {
          ASSERT_EQ(v, 0.0);
        }
      }
    ASSERT_GT(white, 0);
    const int dy = top > 0 ? top : bottom - (kSide - 1);
    const int dx = left > 0 ? left : right - (kSide - 1);
    ASSERT_LE(std::abs(dy), kShift);
    ASSERT_LE(std::abs(dx), kShift);
    ASSERT_EQ(white, (bottom - top + 1) * (right - left + 1)) << "not a filled rectangle";
    ASSERT_EQ(white, (kSide - std::abs(dy)) * (kSide - std::abs(dx)));
    offsets_seen.insert({dy, dx});
  }
  // 50 draws from 25 offsets: a generator stuck on one value, or a range off by one, shows here.
  EXPECT_GE(offsets_seen.size(), 15u);
}

TEST(MnistBatch, ShiftKeepsPixelsAtTheirShiftedPlace) {
  // One bright pixel in the middle of a 7x7 image lands at (3 + dy, 3 + dx) with |dy|, |dx| <= 3;
  // every offset of the 49 is reachable, and over 400 draws each corner offset appears.
  nn::MnistSplit data{.count = 1, .rows = 7, .cols = 7, .images = std::vector<std::uint8_t>(49, 0),
                      .labels = {0}};
  data.images[3 * 7 + 3] = 200;
  const std::vector<std::int64_t> batch(400, 0);
  ag::Generator generator(11);
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  nn::fill_batch(images, targets, data, batch,
                 nn::BatchOptions{.mean = 0, .stddev = 1, .max_shift = 3, .dtype = ag::DType::Float64},
                 &generator);
  std::set<int> positions;
  for (std::int64_t b = 0; b < 400; ++b) {
    int bright = -1;
    for (int i = 0; i < 49; ++i) {
      const double v = images.at(b * 49 + i);
      if (v != 0.0) {
        ASSERT_EQ(bright, -1) << "two bright pixels";
        ASSERT_DOUBLE_EQ(v, 200 / 255.0);
        bright = i;
      }
    }
    ASSERT_NE(bright, -1) << "a shift of at most 3 keeps the centre pixel of a 7x7 image";
    positions.insert(bright);
  }
  for (int corner : {0, 6, 42, 48}) EXPECT_TRUE(positions.count(corner)) << corner;
}

TEST(MnistBatch, SameSeedGivesTheSameAugmentedBatch) {
  const nn::MnistSplit data = synthetic_split(4, 28, 28);
  const std::vector<std::int64_t> indices{0, 1, 2, 3};
  const auto batch = [&](std::uint64_t seed) {
    ag::Generator generator(seed);
    ag::Tensor images;
    std::vector<std::int64_t> targets;
    nn::fill_batch(images, targets, data, indices, nn::BatchOptions{.max_shift = 2}, &generator);
    return images.to_vector();
  };
  EXPECT_EQ(batch(1), batch(1));
  EXPECT_NE(batch(1), batch(2));
}

TEST(MnistBatch, ShiftsDrawnFirstFillTheSameBatchInParts) {
  // What lenet train does with threads: draw the batch's shifts, then fill its parts separately.
  const nn::MnistSplit data = synthetic_split(10, 28, 28);
  const std::vector<std::int64_t> indices{3, 1, 4, 1, 5, 9, 2};
  const nn::BatchOptions options{.max_shift = 2};
  ag::Generator whole_generator(5), parts_generator(5);
  ag::Tensor whole, first_part, second_part;
  std::vector<std::int64_t> whole_targets, first_targets, second_targets;
  nn::fill_batch(whole, whole_targets, data, indices, options, &whole_generator);

  std::vector<nn::Shift> shifts(indices.size());
  nn::draw_shifts(shifts, options.max_shift, parts_generator);
  const std::span<const std::int64_t> all(indices);
  const std::span<const nn::Shift> all_shifts(shifts);
  nn::fill_batch(second_part, second_targets, data, all.subspan(3), options, all_shifts.subspan(3));
  nn::fill_batch(first_part, first_targets, data, all.first(3), options, all_shifts.first(3));

  std::vector<double> joined = first_part.to_vector();
  for (double v : second_part.to_vector()) joined.push_back(v);
  EXPECT_EQ(joined, whole.to_vector());
  first_targets.insert(first_targets.end(), second_targets.begin(), second_targets.end());
  EXPECT_EQ(first_targets, whole_targets);
  EXPECT_EQ(parts_generator.state(), whole_generator.state()) << "the same draws, no more";
  EXPECT_TRUE(std::any_of(shifts.begin(), shifts.end(), [](nn::Shift s) { return s.dy != 0 || s.dx != 0; }));
}

TEST(MnistBatch, GivenShiftsMustMatchTheExamples) {
  const nn::MnistSplit data = synthetic_split(3, 4, 4);
  ag::Tensor images;
  std::vector<std::int64_t> targets;
  const std::vector<std::int64_t> two{0, 1};
  const std::vector<nn::Shift> one(1);
  EXPECT_THROW(nn::fill_batch(images, targets, data, two, {}, one), std::invalid_argument);
  ag::Generator generator(1);
  std::vector<nn::Shift> shifts(3);
  EXPECT_THROW(nn::draw_shifts(shifts, -1, generator), std::invalid_argument);
  nn::draw_shifts(shifts, 0, generator);
  EXPECT_EQ(generator.state(), ag::Generator(1).state()) << "no augmentation draws nothing";
}

TEST(MnistShuffle, IsAPermutationDeterminedBySeed) {
  const auto order = [](std::uint64_t seed) {
    ag::Generator generator(seed);
    return nn::example_order(1000, &generator);
  };
  const std::vector<std::int64_t> a = order(42), b = order(42), c = order(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<std::int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, nn::example_order(1000));
  EXPECT_NE(a, nn::example_order(1000)) << "not shuffled at all";
  // Every element moves somewhere: position 0 takes different values across seeds.
  std::set<std::int64_t> firsts;
  for (std::uint64_t seed = 0; seed < 20; ++seed) firsts.insert(order(seed)[0]);
  EXPECT_GE(firsts.size(), 15u);
}

TEST(MnistShuffle, HandlesEmptyAndSingleton) {
  ag::Generator generator(1);
  EXPECT_TRUE(nn::example_order(0, &generator).empty());
  EXPECT_EQ(nn::example_order(1, &generator), (std::vector<std::int64_t>{0}));
}

// ---- The real data set, when tools/fetch-mnist has fetched it (tests run from the source root) ----

TEST(MnistReal, ReadsTheFetchedDataSet) {
  const std::string dir = "data/mnist";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " is absent; run tools/fetch-mnist";
  const nn::MnistSplit train = nn::load_mnist(dir, nn::Split::Train);
  const nn::MnistSplit test = nn::load_mnist(dir, nn::Split::Test);
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  EXPECT_EQ(train.rows, 28);
  EXPECT_EQ(train.cols, 28);
  EXPECT_EQ(train.labels[0], 5);
  EXPECT_EQ(test.labels[0], 7);
  std::vector<std::int64_t> per_class(10, 0);
  for (std::uint8_t label : train.labels) ++per_class[label];
  for (std::int64_t n : per_class) EXPECT_GT(n, 5000);  // MNIST is roughly balanced
}

}  // namespace
