// MNIST IDX reader, split loader and batching helpers. See mnist.hpp.
//
// IDX layout: a 4-byte big-endian magic 0x0000TTDD (TT = 0x08 for unsigned bytes, DD = number of
// dimensions), DD big-endian uint32 sizes, then the payload, row-major, nothing after it.
#include "models/data/mnist.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <utility>

namespace nn {

namespace {

[[noreturn]] void data_error(const std::string& path, const std::string& problem) {
  throw DataError(path + ": " + problem);
}

std::string hex32(std::uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

/// A file read front to back, either as it is or through zlib when it starts with the gzip magic.
/// Raw files know their size up front, so a header can be checked against it before any allocation;
/// gzip streams do not (the size in the trailer is only mod 2^32), so they are read in bounded chunks.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) data_error(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat info {};
    if (::fstat(fd_, &info) != 0) fail_errno("cannot stat");
    if (S_ISDIR(info.st_mode)) data_error_and_close("is a directory, not an IDX file");
    file_size_ = static_cast<std::int64_t>(info.st_size);

    unsigned char magic[2] = {0, 0};
    const ssize_t got = ::pread(fd_, magic, 2, 0);
    if (got < 0) fail_errno("read failed");
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
      gz_ = ::gzdopen(fd_, "rb");  // takes over fd_; gzclose closes it
      if (gz_ == nullptr) data_error_and_close("cannot start gzip decompression");
      fd_ = -1;
      ::gzbuffer(gz_, 1 << 17);
    }
  }
  ~ByteSource() {
    if (gz_ != nullptr) ::gzclose(gz_);
    if (fd_ >= 0) ::close(fd_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool compressed() const { return gz_ != nullptr; }
  /// Size of a raw file in bytes; meaningless for gzip.
  std::int64_t raw_size() const { return file_size_; }
  /// How error messages refer to the byte stream being parsed.
  const char* stream_name() const { return compressed() ? "the decompressed data" : "the file"; }

  /// Reads up to n bytes; fewer only at the end of the stream. Throws DataError on I/O or gzip errors.
  std::size_t read(void* buffer, std::size_t n) {
    auto* out = static_cast<unsigned char*>(buffer);
    std::size_t done = 0;
    while (done < n) {
      // Chunks of at most 1 MiB keep gzread's int-sized count in range.
      const std::size_t want = std::min<std::size_t>(n - done, std::size_t{1} << 20);
      if (compressed()) {
        const int got = ::gzread(gz_, out + done, static_cast<unsigned>(want));
        // zlib reports a stream cut short (Z_BUF_ERROR) or corrupt only through gzerror.
        int code = Z_OK;
        const char* message = ::gzerror(gz_, &code);
        if (got < 0 || (got == 0 && code != Z_OK)) {
          if (code == Z_BUF_ERROR)
            data_error(path_, std::string("truncated: the gzip stream ends early (") + message + ")");
          data_error(path_, std::string("corrupt gzip data: ") + message);
        }
        if (got == 0) break;
        done += static_cast<std::size_t>(got);
      } else {
        const ssize_t got = ::read(fd_, out + done, want);
        if (got < 0) {
          if (errno == EINTR) continue;
          fail_errno("read failed");
        }
        if (got == 0) break;
        done += static_cast<std::size_t>(got);
      }
    }
    return done;
  }

 private:
  [[noreturn]] void fail_errno(const char* what) {
    const int saved = errno;
    data_error_and_close(std::string(what) + ": " + std::strerror(saved));
  }
  [[noreturn]] void data_error_and_close(const std::string& problem) {
    // Called from the constructor, where the destructor will not run.
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    data_error(path_, problem);
  }

  std::string path_;
  int fd_ = -1;
  gzFile gz_ = nullptr;
  std::int64_t file_size_ = 0;
};

std::uint32_t big_endian_u32(const unsigned char* bytes) {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

/// Reads and checks the magic number and the dimensions. `kind` is "images" or "labels".
std::vector<std::int64_t> read_idx_header(ByteSource& source, const std::string& path,
                                          int expected_dims, const char* kind) {
  const std::uint32_t expected_magic = 0x00000800u | static_cast<std::uint32_t>(expected_dims);
  const std::size_t header_bytes = 4 + 4 * static_cast<std::size_t>(expected_dims);

  unsigned char magic_bytes[4];
  const std::size_t got_magic = source.read(magic_bytes, 4);
  if (got_magic < 4)
    data_error(path, "truncated: " + std::string(source.stream_name()) + " has " +
                         std::to_string(got_magic) + " bytes, too few for an IDX header (" +
                         std::to_string(header_bytes) + " bytes for " + kind + ")");
  const std::uint32_t magic = big_endian_u32(magic_bytes);
  if ((magic & 0xffffff00u) != 0x00000800u)
    data_error(path, "bad magic number " + hex32(magic) + ": not an IDX file of unsigned bytes (" +
                         kind + " files start with " + hex32(expected_magic) + ")");
  const int dims = static_cast<int>(magic & 0xffu);
  if (dims != expected_dims)
    data_error(path, "wrong number of dimensions: magic " + hex32(magic) + " says " +
                         std::to_string(dims) + ", " + kind + " need " +
                         std::to_string(expected_dims) + " (magic " + hex32(expected_magic) + ")");

  unsigned char size_bytes[4 * 3];
  const std::size_t size_count = 4 * static_cast<std::size_t>(dims);
  const std::size_t got_sizes = source.read(size_bytes, size_count);
  if (got_sizes < size_count)
    data_error(path, "truncated: " + std::string(source.stream_name()) + " ends inside the header (" +
                         std::to_string(4 + got_sizes) + " of " + std::to_string(header_bytes) +
                         " bytes)");
  std::vector<std::int64_t> sizes(static_cast<std::size_t>(dims));
  for (int d = 0; d < dims; ++d) {
    sizes[static_cast<std::size_t>(d)] = big_endian_u32(size_bytes + 4 * d);
    if (sizes[static_cast<std::size_t>(d)] == 0)
      data_error(path, "dimension " + std::to_string(d) + " of the header is 0; " + kind +
                           " need every dimension positive");
  }
  return sizes;
}

/// Reads exactly `payload_bytes` after the header, checking the stream holds no more and no less,
/// and allocating only as much as the stream really holds. `claim` describes what the header says.
std::vector<std::uint8_t> read_idx_payload(ByteSource& source, const std::string& path,
                                           std::int64_t header_bytes, std::int64_t payload_bytes,
                                           const std::string& claim) {
  const auto size_problem = [&](const char* problem, const std::string& actual) {
    data_error(path, std::string(problem) + ": header says " + claim + " (" +
                         std::to_string(payload_bytes) + " bytes) but " + source.stream_name() +
                         " has " + actual + " bytes after the header");
  };
  std::vector<std::uint8_t> payload;
  if (!source.compressed()) {
    const std::int64_t available = source.raw_size() - header_bytes;
    if (available < payload_bytes) size_problem("truncated", std::to_string(available));
    if (available > payload_bytes) size_problem("trailing bytes", std::to_string(available));
    payload.resize(static_cast<std::size_t>(payload_bytes));
    const std::size_t got = source.read(payload.data(), payload.size());
    // The file shrank between fstat and read.
    if (got < payload.size()) size_problem("truncated", std::to_string(got));
  } else {
    // Grow with the data actually decompressed, never with the header's claim alone.
    constexpr std::int64_t kChunk = std::int64_t{1} << 20;
    std::int64_t got = 0;
    while (got < payload_bytes) {
      const std::int64_t want = std::min(kChunk, payload_bytes - got);
      payload.resize(static_cast<std::size_t>(got + want));
      const std::size_t n = source.read(payload.data() + got, static_cast<std::size_t>(want));
      got += static_cast<std::int64_t>(n);
      if (n < static_cast<std::size_t>(want)) size_problem("truncated", std::to_string(got));
    }
  }
  unsigned char extra;
  if (source.read(&extra, 1) != 0)
    size_problem("trailing bytes", "more than " + std::to_string(payload_bytes));
  return payload;
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  ByteSource source(path);
  const std::vector<std::int64_t> sizes = read_idx_header(source, path, 3, "images");
  const std::int64_t count = sizes[0], rows = sizes[1], cols = sizes[2];
  if (rows > kMaxImageSide || cols > kMaxImageSide)
    data_error(path, "image size " + std::to_string(rows) + "x" + std::to_string(cols) +
                         " exceeds the limit of " + std::to_string(kMaxImageSide) + " pixels a side");
  // count < 2^32 and rows, cols <= 4096, so this fits easily; checked anyway, as the bounds may move.
  std::int64_t image_bytes = 0, payload_bytes = 0;
  if (__builtin_mul_overflow(rows, cols, &image_bytes) ||
      __builtin_mul_overflow(count, image_bytes, &payload_bytes))
    data_error(path, "header size " + std::to_string(count) + " images of " + std::to_string(rows) +
                         "x" + std::to_string(cols) + " overflows a 64-bit byte count");
  const std::string claim = std::to_string(count) + " images of " + std::to_string(rows) + "x" +
                            std::to_string(cols);

  IdxImages images;
  images.count = count;
  images.rows = rows;
  images.cols = cols;
  images.pixels = read_idx_payload(source, path, 16, payload_bytes, claim);
  return images;
}

std::vector<std::uint8_t> read_idx_labels(const std::string& path, int num_classes) {
  if (num_classes < 1 || num_classes > 256)
    ag::fail("read_idx_labels", "num_classes must be in [1, 256], got " + std::to_string(num_classes));
  ByteSource source(path);
  const std::int64_t count = read_idx_header(source, path, 1, "labels")[0];
  std::vector<std::uint8_t> labels =
      read_idx_payload(source, path, 8, count, std::to_string(count) + " labels");
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= num_classes)
      data_error(path, "label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                           " is out of range [0, " + std::to_string(num_classes) + ")");
  return labels;
}

MnistFiles find_mnist_files(const std::string& dir, Split split) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const char* split_name = split == Split::Train ? "training" : "test";
  // The original site's names use '-' before idx; some mirrors use '.'. Raw first, then gzip.
  const auto find = [&](const std::string& kind, const std::string& idx_type) -> std::string {
    std::vector<std::string> tried;
    for (const char* suffix : {"", ".gz"}) {
      for (const char* separator : {"-", "."}) {
        const std::filesystem::path candidate =
            std::filesystem::path(dir) / (prefix + "-" + kind + separator + idx_type + suffix);
        std::error_code ignored;
        if (std::filesystem::is_regular_file(candidate, ignored)) return candidate.string();
        tried.push_back(std::filesystem::absolute(candidate, ignored).string());
      }
    }
    std::string list;
    for (const std::string& path : tried) list += (list.empty() ? "" : ", ") + path;
    data_error(dir, std::string("no MNIST ") + split_name + " " + kind + " file; tried " + list +
                        " (tools/fetch-mnist downloads them)");
  };
  return MnistFiles{.images = find("images", "idx3-ubyte"), .labels = find("labels", "idx1-ubyte")};
}

MnistSplit load_mnist(const std::string& dir, Split split, int num_classes) {
  const MnistFiles files = find_mnist_files(dir, split);
  IdxImages images = read_idx_images(files.images);
  std::vector<std::uint8_t> labels = read_idx_labels(files.labels, num_classes);
  if (static_cast<std::int64_t>(labels.size()) != images.count)
    data_error(files.labels, "has " + std::to_string(labels.size()) + " labels but " + files.images +
                                 " has " + std::to_string(images.count) + " images");
  return MnistSplit{.count = images.count,
                    .rows = images.rows,
                    .cols = images.cols,
                    .images = std::move(images.pixels),
                    .labels = std::move(labels)};
}

namespace {

void check_batch(const MnistSplit& data, std::span<const std::int64_t> indices, const BatchOptions& options) {
  const std::int64_t pixels = data.rows * data.cols;
  if (data.rows < 0 || data.cols < 0 || data.count < 0 ||
      data.images.size() != static_cast<std::size_t>(data.count * pixels) ||
      data.labels.size() != static_cast<std::size_t>(data.count))
    ag::fail("fill_batch", "the split's sizes disagree: " + std::to_string(data.count) + " examples of " +
                               std::to_string(data.rows) + "x" + std::to_string(data.cols) + " but " +
                               std::to_string(data.images.size()) + " pixel bytes and " +
                               std::to_string(data.labels.size()) + " labels");
  if (!(options.stddev > 0)) ag::fail("fill_batch", "stddev must be positive");
  for (std::size_t b = 0; b < indices.size(); ++b)
    if (indices[b] < 0 || indices[b] >= data.count)
      ag::fail("fill_batch", "index " + std::to_string(indices[b]) + " at batch position " +
                                 std::to_string(b) + " is outside [0, " + std::to_string(data.count) +
                                 ")");
}

// The work of both fill_batch overloads, after checking: shift_of(b) gives example b's shift, and
// is called once per example, in order.
template <class ShiftOf>
void fill_checked(ag::Tensor& images, std::vector<std::int64_t>& targets, const MnistSplit& data,
                  std::span<const std::int64_t> indices, const BatchOptions& options, ShiftOf shift_of) {
  const std::int64_t batch = static_cast<std::int64_t>(indices.size());
  const std::int64_t rows = data.rows, cols = data.cols, pixels = rows * cols;
  // Reuse the caller's buffer only when nobody else can see it change (a graph from the previous
  // step may still hold it). Its shape is compared size by size: building a Shape to compare with
  // would be a heap allocation per batch.
  const bool reusable = images.defined() && images.dim() == 4 && images.size(0) == batch &&
                        images.size(1) == 1 && images.size(2) == rows && images.size(3) == cols &&
                        images.is_unique();
  if (!reusable)
    images = ag::Tensor({batch, 1, rows, cols}, images.defined() ? images.dtype() : options.dtype);
  targets.resize(indices.size());

  ag::dispatch(images.dtype(), [&]<class T>() {
    // Every pixel value maps through one table: 256 divisions instead of B*784.
    std::array<T, 256> normalised;
    for (int v = 0; v < 256; ++v)
      normalised[static_cast<std::size_t>(v)] =
          static_cast<T>((v / 255.0 - options.mean) / options.stddev);
    const T background = normalised[0];
    // The same values as one multiply-add, when it gives every one of them exactly (it does for
    // float32 and MNIST's mean and stddev): a loop the compiler vectorises, where the table is one
    // dependent load per pixel. std::fma rounds once, vectorised or not.
    const double scale = 1.0 / (255.0 * options.stddev), offset = -options.mean / options.stddev;
    const auto affine = [scale, offset](std::uint8_t v) {
      return static_cast<T>(std::fma(static_cast<double>(v), scale, offset));
    };
    bool affine_exact = true;
    for (int v = 0; v < 256; ++v)
      affine_exact &= affine(static_cast<std::uint8_t>(v)) == normalised[static_cast<std::size_t>(v)];
    const auto convert = [&](const std::uint8_t* from, T* to, std::int64_t count) {
      if (affine_exact)
        for (std::int64_t i = 0; i < count; ++i) to[i] = affine(from[i]);
      else
        for (std::int64_t i = 0; i < count; ++i) to[i] = normalised[from[i]];
    };

    T* out = images.data<T>();
    for (std::int64_t b = 0; b < batch; ++b) {
      // Examples come in shuffled order from a split larger than the caches, so each image's bytes
      // come from memory: those of the image kAhead places on are asked for now. (Written out
      // here, not in a lambda, where the compiler may drop the prefetch.)
      constexpr std::int64_t kAhead = 2;
      if (b + kAhead < batch) {
        const std::uint8_t* ahead =
            data.images.data() + indices[static_cast<std::size_t>(b + kAhead)] * pixels;
        for (std::int64_t offset = 0; offset < pixels; offset += 64)
          __builtin_prefetch(ahead + offset);
      }
      const std::int64_t index = indices[static_cast<std::size_t>(b)];
      const std::uint8_t* src = data.images.data() + index * pixels;
      T* dst = out + b * pixels;
      targets[static_cast<std::size_t>(b)] = data.labels[static_cast<std::size_t>(index)];
      // out[r][c] = in[r - dy][c - dx]: the digit moves down by dy and right by dx. Rows
      // [r_begin, r_end) and columns [c_begin, c_end) have a source pixel; the rest are background.
      const auto [dy, dx] = shift_of(b);
      const std::int64_t r_begin = std::clamp<std::int64_t>(dy, 0, rows);
      const std::int64_t r_end = std::clamp<std::int64_t>(rows + dy, 0, rows);
      const std::int64_t c_begin = std::clamp<std::int64_t>(dx, 0, cols);
      const std::int64_t c_end = std::clamp<std::int64_t>(cols + dx, 0, cols);
      std::fill(dst, dst + r_begin * cols, background);
      std::fill(dst + std::max(r_begin, r_end) * cols, dst + pixels, background);
      if (r_end <= r_begin) continue;
      // The rows are one run of the source too: out[r][c] = split[first + (r - r_begin) cols + c].
      // A shifted row's run takes |dx| pixels from the next or previous row, which are then made
      // background; the run may reach |dx| bytes into the neighbouring image, but not outside the
      // split. (One long run converts as fast as an unshifted image; row by row, a shifted image
      // would be 28 short runs.)
      const std::int64_t first = index * pixels + (r_begin - dy) * cols - dx;
      const std::int64_t run = (r_end - r_begin) * cols;
      if (first >= 0 && first + run <= static_cast<std::int64_t>(data.images.size())) {
        convert(data.images.data() + first, dst + r_begin * cols, run);
        if (dx != 0)
          for (std::int64_t r = r_begin; r < r_end; ++r) {
            T* dst_row = dst + r * cols;
            std::fill(dst_row, dst_row + c_begin, background);
            std::fill(dst_row + std::max(c_begin, c_end), dst_row + cols, background);
          }
        continue;
      }
      for (std::int64_t r = r_begin; r < r_end; ++r) {
        T* dst_row = dst + r * cols;
        const std::uint8_t* src_row = src + (r - dy) * cols;
        std::fill(dst_row, dst_row + c_begin, background);
        if (c_end > c_begin) convert(src_row + c_begin - dx, dst_row + c_begin, c_end - c_begin);
        std::fill(dst_row + std::max(c_begin, c_end), dst_row + cols, background);
      }
    }
  });
}

Shift draw_shift(int max_shift, ag::Generator& generator) {
  const auto choices = static_cast<std::uint64_t>(2 * max_shift + 1);
  const auto dy = static_cast<std::int64_t>(generator.below(choices)) - max_shift;
  const auto dx = static_cast<std::int64_t>(generator.below(choices)) - max_shift;
  return {.dy = dy, .dx = dx};
}

}  // namespace

void fill_batch(ag::Tensor& images, std::vector<std::int64_t>& targets, const MnistSplit& data,
                std::span<const std::int64_t> indices, const BatchOptions& options,
                ag::Generator* generator) {
  if (options.max_shift < 0) ag::fail("fill_batch", "max_shift must be non-negative");
  if (options.max_shift > 0 && generator == nullptr)
    ag::fail("fill_batch", "augmentation (max_shift > 0) needs a generator");
  check_batch(data, indices, options);
  fill_checked(images, targets, data, indices, options, [&](std::int64_t) {
    return options.max_shift > 0 ? draw_shift(options.max_shift, *generator) : Shift{};
  });
}

void fill_batch(ag::Tensor& images, std::vector<std::int64_t>& targets, const MnistSplit& data,
                std::span<const std::int64_t> indices, const BatchOptions& options,
                std::span<const Shift> shifts) {
  if (shifts.size() != indices.size())
    ag::fail("fill_batch", std::to_string(shifts.size()) + " shifts for " + std::to_string(indices.size()) +
                               " examples");
  check_batch(data, indices, options);
  fill_checked(images, targets, data, indices, options,
               [&](std::int64_t b) { return shifts[static_cast<std::size_t>(b)]; });
}

void draw_shifts(std::span<Shift> shifts, int max_shift, ag::Generator& generator) {
  if (max_shift < 0) ag::fail("draw_shifts", "max_shift must be non-negative");
  for (Shift& shift : shifts) shift = max_shift > 0 ? draw_shift(max_shift, generator) : Shift{};
}

void shuffle(std::span<std::int64_t> indices, ag::Generator& generator) {
  for (std::size_t i = indices.size(); i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(generator.below(i));  // j in [0, i)
    std::swap(indices[i - 1], indices[j]);
  }
}

std::vector<std::int64_t> example_order(std::int64_t count, ag::Generator* generator) {
  if (count < 0) ag::fail("example_order", "count must be non-negative");
  std::vector<std::int64_t> order(static_cast<std::size_t>(count));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  if (generator != nullptr) shuffle(order, *generator);
  return order;
}

}  // namespace nn
