// MNIST: the IDX file reader (raw or gzip), the split loader that finds the files under their usual
// names, and the batching helpers (normalise, shift-augment, shuffle) that feed the training loop.
//
// Files are untrusted input: every header field is checked before anything is allocated, and every
// problem is reported as one line naming the file, e.g.
//   data/mnist/train-labels-idx1-ubyte: label 11 at index 5 is out of range [0, 10)
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/tensor.hpp"

namespace nn {

/// A data file that cannot be used: missing, unreadable, malformed or inconsistent. The message is
/// one line, "<file>: <problem>".
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Largest image side the reader accepts; MNIST is 28. It bounds what a header can ask for.
inline constexpr std::int64_t kMaxImageSide = 4096;

/// The images of an IDX3 file: count images of rows x cols bytes, row-major, 0 = background.
struct IdxImages {
  std::int64_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;  // [count, rows, cols]
};

/// Reads an IDX3 unsigned-byte file (magic 0x00000803), raw or gzip-compressed (recognised by its
/// first two bytes 1f 8b, not by its name). Throws DataError on any problem.
IdxImages read_idx_images(const std::string& path);

/// Reads an IDX1 unsigned-byte file (magic 0x00000801) of labels, each checked to lie in
/// [0, num_classes). Raw or gzip, as above. Throws DataError on any problem.
std::vector<std::uint8_t> read_idx_labels(const std::string& path, int num_classes = 10);

enum class Split { Train, Test };

/// One split of MNIST kept as bytes (47 MB for the training set, where float would take 188 MB);
/// batches are converted to float as they are drawn.
struct MnistSplit {
  std::int64_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> images;  // [count, rows, cols]
  std::vector<std::uint8_t> labels;  // [count], each in [0, num_classes)
};

/// The image and label files of a split, as found on disk.
struct MnistFiles {
  std::string images, labels;
};

/// Finds a split's files in `dir` under either common spelling, raw preferred over .gz:
///   train-images-idx3-ubyte, train-images.idx3-ubyte, and each + ".gz" (t10k-... for Test;
///   labels likewise with labels-idx1). When one of the two is missing, throws DataError listing
/// every absolute path tried.
MnistFiles find_mnist_files(const std::string& dir, Split split);

/// Reads a split from `dir` (see find_mnist_files) and checks that the image and label counts agree.
MnistSplit load_mnist(const std::string& dir, Split split, int num_classes = 10);

struct BatchOptions {
  double mean = 0.1307;    // of the training pixels scaled to [0, 1]
  double stddev = 0.3081;  // ditto; each pixel becomes (x / 255 - mean) / stddev
  /// Augmentation: each image moves by a random (dy, dx), each uniform in [-max_shift, max_shift],
  /// and the uncovered border is background (raw 0). 0 turns augmentation off.
  int max_shift = 0;
  /// dtype of a newly allocated images tensor (a reused one keeps its own).
  ag::DType dtype = ag::DType::Float32;
};

/// Fills images:[B, 1, rows, cols] and targets:[B] with the examples data[indices[0..B)], normalised
/// (and shifted if options.max_shift > 0, drawing from `generator`, which is then required).
/// `images` is written in place when it already has that shape and no other Tensor shares its
/// storage; otherwise it is replaced by a new tensor. `targets` reuses its capacity.
/// Throws std::invalid_argument for an index outside [0, data.count) or a missing generator.
void fill_batch(ag::Tensor& images, std::vector<std::int64_t>& targets, const MnistSplit& data,
                std::span<const std::int64_t> indices, const BatchOptions& options = {},
                ag::Generator* generator = nullptr);

/// How augmentation moves one image: down by dy rows and right by dx columns.
struct Shift {
  std::int64_t dy = 0, dx = 0;
};

/// One random shift per example, dy and dx each uniform in [-max_shift, max_shift], drawn in the
/// order fill_batch draws them (dy, dx, example after example): drawing the shifts of a batch here
/// and filling its parts with them gives the batch fill_batch would have given with `generator`.
void draw_shifts(std::span<Shift> shifts, int max_shift, ag::Generator& generator);

/// fill_batch with the shifts given (shifts[b] for example b; options.max_shift is not used). It
/// draws nothing, so the parts of a batch can be filled on different threads.
/// Throws std::invalid_argument as above, or when shifts and indices differ in size.
void fill_batch(ag::Tensor& images, std::vector<std::int64_t>& targets, const MnistSplit& data,
                std::span<const std::int64_t> indices, const BatchOptions& options,
                std::span<const Shift> shifts);

/// Fisher-Yates shuffle in place, drawing from generator.below(): the same seed gives the same order
/// on every platform.
void shuffle(std::span<std::int64_t> indices, ag::Generator& generator);

/// 0, 1, ..., count - 1, shuffled as above when a generator is given.
std::vector<std::int64_t> example_order(std::int64_t count, ag::Generator* generator = nullptr);

}  // namespace nn
