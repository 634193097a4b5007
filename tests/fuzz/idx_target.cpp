// Fuzz target: the IDX reader, on raw and gzip files, checked against a reference reading of the
// format. See targets.hpp.
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include <optional>
#include <string>
#include <vector>

#include "models/data/mnist.hpp"
#include "tests/fuzz/targets.hpp"

namespace fuzz {

namespace {

using Bytes = std::vector<std::uint8_t>;

/// The reader takes a path. An in-memory file (memfd) reached through /proc/self/fd keeps the
/// disk out of the loop; it is created once and rewritten for each input.
class MemoryFile {
 public:
  MemoryFile() {
    fd_ = ::memfd_create("fuzz_idx", MFD_CLOEXEC);
    check(fd_ >= 0, "idx", "memfd_create failed");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& write(const Bytes& bytes) {
    check(::ftruncate(fd_, 0) == 0, "idx", "ftruncate failed");
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
      check(n > 0, "idx", "pwrite failed");
      done += static_cast<std::size_t>(n);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

Bytes gzip(const Bytes& raw) {
  z_stream stream{};
  check(::deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, /* gzip wrapper = */ 15 + 16, 8,
                       Z_DEFAULT_STRATEGY) == Z_OK,
        "idx", "deflateInit2 failed");
  Bytes out(::deflateBound(&stream, static_cast<uLong>(raw.size())) + 32);
  stream.next_in = const_cast<Bytef*>(raw.data());
  stream.avail_in = static_cast<uInt>(raw.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = ::deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  ::deflateEnd(&stream);
  check(status == Z_STREAM_END, "idx", "deflate did not finish");
  return out;
}

std::uint32_t big_endian_u32(const Bytes& bytes, std::size_t at) {
  return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) |
         (std::uint32_t{bytes[at + 2]} << 8) | std::uint32_t{bytes[at + 3]};
}

/// What a correct reader returns for uncompressed IDX bytes: the sizes and the payload, or nothing
/// when the file is invalid. Written from the format description, independently of the reader.
struct Reference {
  std::vector<std::uint32_t> sizes;
  Bytes payload;
};

std::optional<Reference> reference_read(const Bytes& file, bool labels) {
  const std::size_t dims = labels ? 1 : 3;
  if (file.size() < 4 + 4 * dims) return std::nullopt;
  if (big_endian_u32(file, 0) != (labels ? 0x801u : 0x803u)) return std::nullopt;
  Reference reference;
  std::uint64_t payload_bytes = 1;
  for (std::size_t d = 0; d < dims; ++d) {
    const std::uint32_t size = big_endian_u32(file, 4 + 4 * d);
    if (size == 0) return std::nullopt;
    if (d > 0 && size > nn::kMaxImageSide) return std::nullopt;
    reference.sizes.push_back(size);
    payload_bytes *= size;  // < 2^32 * 2^12 * 2^12: no overflow
  }
  if (file.size() - (4 + 4 * dims) != payload_bytes) return std::nullopt;
  reference.payload.assign(file.begin() + static_cast<std::ptrdiff_t>(4 + 4 * dims), file.end());
  if (labels)
    for (std::uint8_t label : reference.payload)
      if (label >= 10) return std::nullopt;
  return reference;
}

}  // namespace

Outcome idx_input(Input input) {
  if (input.empty()) return Outcome::Refused;
  static MemoryFile file;
  const bool labels = (input[0] & 1) != 0, compress = (input[0] & 2) != 0;
  const Bytes content(input.begin() + 1, input.end());
  const Bytes written = compress ? gzip(content) : content;
  const std::string& path = file.write(written);
  // Raw bytes that happen to start with the gzip magic go through zlib: no reference for those,
  // but the reader must still either refuse them cleanly or return a self-consistent result.
  const bool reader_inflates = written.size() >= 2 && written[0] == 0x1f && written[1] == 0x8b;
  const std::optional<Reference> expected =
      compress || !reader_inflates ? reference_read(content, labels) : std::nullopt;
  const bool have_reference = compress || !reader_inflates;

  std::vector<std::uint32_t> sizes;
  Bytes payload;
  try {
    if (labels) {
      payload = nn::read_idx_labels(path);
      sizes = {static_cast<std::uint32_t>(payload.size())};
      for (std::uint8_t label : payload) check(label < 10, "idx", "a label >= 10 was accepted");
    } else {
      nn::IdxImages images = nn::read_idx_images(path);
      check(images.count > 0 && images.rows > 0 && images.cols > 0 &&
                images.rows <= nn::kMaxImageSide && images.cols <= nn::kMaxImageSide,
            "idx", "accepted sizes out of range");
      check(static_cast<std::uint64_t>(images.count * images.rows * images.cols) == images.pixels.size(),
            "idx", "pixel count differs from count x rows x cols");
      sizes = {static_cast<std::uint32_t>(images.count), static_cast<std::uint32_t>(images.rows),
               static_cast<std::uint32_t>(images.cols)};
      payload = std::move(images.pixels);
    }
  } catch (const nn::DataError& error) {
    const std::string message = error.what();
    check(message.rfind(path + ": ", 0) == 0 && message.find('\n') == std::string::npos, "idx",
          "error message is not one line naming the file: " + message);
    check(!have_reference || !expected, "idx", "refused a valid file: " + message);
    return Outcome::Refused;
  }
  if (!have_reference) return Outcome::Read;
  check(expected.has_value(), "idx", "accepted an invalid file");
  check(sizes == expected->sizes, "idx", "read sizes differ from the header's");
  check(payload == expected->payload, "idx", "read payload differs from the file's");
  return Outcome::Read;
}

}  // namespace fuzz
