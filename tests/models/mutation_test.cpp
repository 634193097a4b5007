// Deterministic mutation test of every reader of untrusted bytes: valid IDX (raw and gzip),
// safetensors, PNG and PGM files are generated here, then mutated with a fixed seed (truncations,
// bit flips, grown dimensions, swapped fields, edits with checksums fixed so they reach the
// decoder) about 10,000 times in all. Each mutated file goes through the fuzz targets'
// checks (tests/fuzz/targets.hpp): it must be read correctly or refused with the reader's own
// exception type. A crash, a hang or an allocation sized by an unchecked header field fails the
// test: each format runs in a child process with an alarm and its address space capped at its
// current size + 256 MiB (the way mnist_test.cpp checks one such header).
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/tensor.hpp"
#include "models/nn/safetensors.hpp"
#include "tests/fuzz/targets.hpp"

namespace {

using Bytes = std::string;

// ---------------------------------------------------------------------------------------------
// Valid files

void append_u32_big_endian(Bytes& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

Bytes idx_images() {  // 3 images of 5x4
  Bytes out;
  for (std::uint32_t field : {0x803u, 3u, 5u, 4u}) append_u32_big_endian(out, field);
  for (int i = 0; i < 3 * 5 * 4; ++i) out.push_back(static_cast<char>(i * 37 % 256));
  return out;
}

Bytes idx_labels() {  // 7 labels
  Bytes out;
  for (std::uint32_t field : {0x801u, 7u}) append_u32_big_endian(out, field);
  for (int label : {3, 1, 4, 1, 5, 9, 2}) out.push_back(static_cast<char>(label));
  return out;
}

Bytes gzip(const Bytes& raw) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out(deflateBound(&stream, static_cast<uLong>(raw.size())) + 32, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  stream.avail_in = static_cast<uInt>(raw.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

Bytes safetensors_file() {
  ag::Tensor weight({2, 3}, ag::DType::Float32), bias({4}, ag::DType::Float64),
      scalar({}, ag::DType::Float32), empty({0, 2}, ag::DType::Float64);
  for (std::int64_t i = 0; i < 6; ++i) weight.data<float>()[i] = 0.25F * static_cast<float>(i) - 1.0F;
  for (std::int64_t i = 0; i < 4; ++i) bias.data<double>()[i] = 1.0 / static_cast<double>(i + 1);
  scalar.data<float>()[0] = 42.0F;
  return nn::encode_safetensors({{"conv.weight", weight}, {"conv.bias", bias}, {"scale", scalar}, {"none", empty}},
                                {{"epoch", "3"}, {"mean", "0.1307"}});
}

/// A PNG written by libpng's simplified API in `format` (gray, gray+alpha, RGB, RGBA, colormap).
Bytes png_file(std::uint32_t width, std::uint32_t height, std::uint32_t format) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = width;
  png.height = height;
  png.format = format;
  std::vector<png_byte> pixels(PNG_IMAGE_SIZE(png));
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<png_byte>((i * 53) % 256);
  std::vector<png_byte> colormap;
  if ((format & PNG_FORMAT_FLAG_COLORMAP) != 0) {
    png.colormap_entries = 16;
    colormap.resize(PNG_IMAGE_COLORMAP_SIZE(png));
    for (std::size_t i = 0; i < colormap.size(); ++i) colormap[i] = static_cast<png_byte>(i * 17);
    for (png_byte& index : pixels) index %= 16;
  }
  png_alloc_size_t size = 0;
  const void* map = colormap.empty() ? nullptr : colormap.data();
  EXPECT_TRUE(png_image_write_get_memory_size(png, size, 0, pixels.data(), 0, map)) << png.message;
  Bytes out(size, '\0');
  EXPECT_TRUE(png_image_write_to_memory(&png, out.data(), &size, 0, pixels.data(), 0, map)) << png.message;
  out.resize(size);
  return out;
}

Bytes pgm_p5() {
  Bytes out = "P5\n# scanner\n6 5\n255\n";
  for (int i = 0; i < 30; ++i) out.push_back(static_cast<char>(i * 8));
  return out;
}

Bytes pgm_p5_16bit() {
  Bytes out = "P5 3 2 1000\n";
  for (int i = 0; i < 6; ++i) {
    const int sample = i * 150;
    out.push_back(static_cast<char>(sample >> 8));
    out.push_back(static_cast<char>(sample & 0xff));
  }
  return out;
}

Bytes pgm_p2() { return "P2\n4 3\n15\n0 1 2 3\n4 5 6 7 # row 2\n8 9 10 15\n"; }

// ---------------------------------------------------------------------------------------------
// Mutations

/// Values that sit on or across the limits readers check: zero, one, powers of two and their
/// neighbours, the image-side limits, and the largest signed and unsigned 32-bit numbers.
constexpr std::uint32_t kInterestingU32[] = {0,     1,      2,          3,          255,        256,
                                             4095,  4096,   4097,       8192,       8193,       65535,
                                             65536, 100000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};

class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : random_(seed) {}

  std::uint64_t below(std::uint64_t bound) { return random_.below(bound); }
  std::uint32_t interesting_u32() { return kInterestingU32[below(std::size(kInterestingU32))]; }

  /// One generic byte-level change, described in `what`.
  Bytes generic(Bytes bytes, std::string& what) {
    switch (below(6)) {
      case 0: {  // truncation
        const std::size_t keep = below(bytes.size());
        what = "truncated to " + std::to_string(keep) + " bytes";
        bytes.resize(keep);
        return bytes;
      }
      case 1: {  // 1 to 4 bit flips
        const int flips = 1 + static_cast<int>(below(4));
        what = std::to_string(flips) + " bit flips at";
        for (int k = 0; k < flips && !bytes.empty(); ++k) {
          const std::size_t bit = below(bytes.size() * 8);
          bytes[bit / 8] = static_cast<char>(bytes[bit / 8] ^ (1 << (bit % 8)));
          what += " " + std::to_string(bit);
        }
        return bytes;
      }
      case 2: {  // a byte set to a boundary value
        if (bytes.empty()) return bytes;
        constexpr unsigned char kValues[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
        const std::size_t at = below(bytes.size());
        const unsigned char value = kValues[below(std::size(kValues))];
        what = "byte " + std::to_string(at) + " set to " + std::to_string(value);
        bytes[at] = static_cast<char>(value);
        return bytes;
      }
      case 3: {  // bytes appended
        const std::size_t count = 1 + below(16);
        what = std::to_string(count) + " bytes appended";
        for (std::size_t k = 0; k < count; ++k) bytes.push_back(static_cast<char>(below(256)));
        return bytes;
      }
      case 4: {  // a slice deleted
        if (bytes.empty()) return bytes;
        const std::size_t at = below(bytes.size()), count = 1 + below(std::min<std::size_t>(16, bytes.size() - at));
        what = std::to_string(count) + " bytes deleted at " + std::to_string(at);
        bytes.erase(at, count);
        return bytes;
      }
      default: {  // a slice duplicated in place
        if (bytes.empty()) return bytes;
        const std::size_t at = below(bytes.size()), count = 1 + below(std::min<std::size_t>(16, bytes.size() - at));
        what = std::to_string(count) + " bytes at " + std::to_string(at) + " duplicated";
        bytes.insert(at, bytes.substr(at, count));
        return bytes;
      }
    }
  }

 private:
  ag::Generator random_;
};

void set_u32_big_endian(Bytes& bytes, std::size_t at, std::uint32_t value) {
  for (int k = 0; k < 4; ++k) bytes[at + static_cast<std::size_t>(k)] = static_cast<char>(value >> (24 - 8 * k));
}

std::uint32_t get_u32_big_endian(const Bytes& bytes, std::size_t at) {
  std::uint32_t value = 0;
  for (int k = 0; k < 4; ++k) value = (value << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(k)]);
  return value;
}

/// IDX: a header field (magic or a dimension) set to an interesting value, two fields swapped, or
/// a generic change.
Bytes mutate_idx(Mutator& mutator, Bytes bytes, std::string& what) {
  const std::size_t fields = bytes.size() / 4 >= 4 && get_u32_big_endian(bytes, 0) == 0x803 ? 4 : 2;
  switch (mutator.below(4)) {
    case 0: {
      const std::size_t field = mutator.below(fields);
      const std::uint32_t value = field == 0 ? 0x800u + static_cast<std::uint32_t>(mutator.below(6))
                                             : mutator.interesting_u32();
      what = "header field " + std::to_string(field) + " set to " + std::to_string(value);
      set_u32_big_endian(bytes, 4 * field, value);
      return bytes;
    }
    case 1: {  // a dimension grown or shrunk by a little
      const std::size_t field = 1 + mutator.below(fields - 1);
      const std::uint32_t value = get_u32_big_endian(bytes, 4 * field) + static_cast<std::uint32_t>(mutator.below(5)) - 2;
      what = "dimension " + std::to_string(field) + " set to " + std::to_string(value);
      set_u32_big_endian(bytes, 4 * field, value);
      return bytes;
    }
    case 2: {
      const std::size_t a = mutator.below(fields), b = mutator.below(fields);
      what = "header fields " + std::to_string(a) + " and " + std::to_string(b) + " swapped";
      const std::uint32_t field_a = get_u32_big_endian(bytes, 4 * a);
      set_u32_big_endian(bytes, 4 * a, get_u32_big_endian(bytes, 4 * b));
      set_u32_big_endian(bytes, 4 * b, field_a);
      return bytes;
    }
    default:
      return mutator.generic(std::move(bytes), what);
  }
}

/// safetensors: an edit of the JSON header (grown shapes, moved or swapped offsets, other dtypes,
/// dropped or retyped fields, metadata of the wrong type), re-serialised with a correct or a wrong
/// length field, or a generic change of the bytes.
Bytes mutate_safetensors(Mutator& mutator, const Bytes& bytes, std::string& what) {
  if (mutator.below(3) == 0) return mutator.generic(bytes, what);
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  nlohmann::ordered_json header = nlohmann::ordered_json::parse(bytes.substr(8, header_length));
  const Bytes data = bytes.substr(8 + header_length);
  std::vector<std::string> names;
  for (const auto& [name, info] : header.items())
    if (name != "__metadata__") names.push_back(name);
  const std::string name = names[mutator.below(names.size())];
  nlohmann::ordered_json& info = header[name];
  const std::uint64_t kHugeValues[] = {0, 1, 7, 1u << 20, std::uint64_t{1} << 31, std::uint64_t{1} << 32,
                                       std::uint64_t{1} << 62, std::uint64_t{1} << 63, ~std::uint64_t{0}};
  const std::uint64_t huge = kHugeValues[mutator.below(std::size(kHugeValues))];
  switch (mutator.below(9)) {
    case 0:
      if (info["shape"].empty()) info["shape"].push_back(huge);
      else info["shape"][mutator.below(info["shape"].size())] = huge;
      what = name + " shape entry set to " + std::to_string(huge);
      break;
    case 1:
      info["shape"].push_back(1 + mutator.below(3));
      what = name + " shape grown by a dimension";
      break;
    case 2:
      info["data_offsets"][mutator.below(2)] = mutator.below(2) == 0 ? huge : mutator.below(data.size() + 8);
      what = name + " data_offsets changed to " + info["data_offsets"].dump();
      break;
    case 3:
      std::swap(info["data_offsets"][0], info["data_offsets"][1]);
      what = name + " data_offsets swapped";
      break;
    case 4: {
      const std::string other = names[mutator.below(names.size())];
      std::swap(info["data_offsets"], header[other]["data_offsets"]);
      what = name + " and " + other + " exchanged data_offsets";
      break;
    }
    case 5: {
      const char* kDtypes[] = {"F32", "F64", "F16", "I64", "U8", "f32", ""};
      info["dtype"] = kDtypes[mutator.below(std::size(kDtypes))];
      what = name + " dtype set to " + info["dtype"].dump();
      break;
    }
    case 6: {
      const char* kFields[] = {"dtype", "shape", "data_offsets"};
      const char* field = kFields[mutator.below(3)];
      const nlohmann::ordered_json kValues[] = {nullptr, -1, 1.5, "3", nlohmann::ordered_json::array(),
                                                nlohmann::ordered_json::object(), {1, 2, 3}, {-1, 2}};
      const auto& value = kValues[mutator.below(std::size(kValues))];
      if (mutator.below(4) == 0) info.erase(field);
      else info[field] = value;
      what = name + " field " + field + " removed or retyped";
      break;
    }
    case 7:
      header["__metadata__"] = mutator.below(2) == 0 ? nlohmann::ordered_json{{"epoch", 3}}
                                                     : nlohmann::ordered_json{"not", "an object"};
      what = "__metadata__ of the wrong type";
      break;
    default:
      header[name] = huge;
      what = name + " entry replaced by a number";
      break;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::uint64_t length_field = text.size();
  if (mutator.below(5) == 0) {
    length_field = mutator.below(2) == 0 ? length_field + mutator.below(16) - 8 : huge;
    what += ", length field " + std::to_string(length_field);
  }
  Bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((length_field >> (8 * i)) & 0xff));
  return out + text + data;
}

/// Sets each complete chunk's CRC to the right value, so an edit inside a chunk reaches libpng.
void fix_png_crcs(Bytes& png) {
  std::size_t at = 8;
  while (at + 12 <= png.size()) {
    const std::uint32_t length = get_u32_big_endian(png, at);
    if (length > png.size() - at - 12) return;
    const auto crc = crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), static_cast<uInt>(4 + length));
    set_u32_big_endian(png, at + 8 + length, static_cast<std::uint32_t>(crc));
    at += 12 + length;
  }
}

/// PNG: IHDR fields (width, height, bit depth, colour type, interlace) set to other values, width
/// and height swapped, or a generic change; the CRCs are fixed afterwards in three cases of four.
Bytes mutate_png(Mutator& mutator, Bytes bytes, std::string& what) {
  constexpr std::size_t kIhdrData = 16;  // signature (8) + length (4) + "IHDR" (4)
  switch (mutator.below(5)) {
    case 0: {
      const std::size_t field = mutator.below(2);
      const std::uint32_t value = mutator.interesting_u32();
      what = std::string(field == 0 ? "width" : "height") + " set to " + std::to_string(value);
      set_u32_big_endian(bytes, kIhdrData + 4 * field, value);
      break;
    }
    case 1: {
      const std::uint32_t width = get_u32_big_endian(bytes, kIhdrData);
      set_u32_big_endian(bytes, kIhdrData, get_u32_big_endian(bytes, kIhdrData + 4));
      set_u32_big_endian(bytes, kIhdrData + 4, width);
      what = "width and height swapped";
      break;
    }
    case 2: {
      const std::size_t field = 8 + mutator.below(5);  // bit depth, colour type, compression, filter, interlace
      const unsigned char kValues[] = {0, 1, 2, 3, 4, 6, 7, 8, 16, 255};
      const unsigned char value = kValues[mutator.below(std::size(kValues))];
      what = "IHDR byte " + std::to_string(field) + " set to " + std::to_string(value);
      bytes[kIhdrData + field] = static_cast<char>(value);
      break;
    }
    default:
      bytes = mutator.generic(std::move(bytes), what);
      break;
  }
  if (mutator.below(4) != 0 && bytes.size() > 8) {
    fix_png_crcs(bytes);
    what += ", CRCs fixed";
  }
  return bytes;
}

/// PGM: one header number (width, height, maxval) replaced by another, or a generic change.
Bytes mutate_pgm(Mutator& mutator, Bytes bytes, std::string& what) {
  if (mutator.below(2) == 0) return mutator.generic(std::move(bytes), what);
  // The header's numbers are the first three runs of digits after the magic.
  std::vector<std::pair<std::size_t, std::size_t>> numbers;  // [begin, end)
  for (std::size_t i = 2; i < bytes.size() && numbers.size() < 3; ++i) {
    if (bytes[i] == '#') {
      while (i < bytes.size() && bytes[i] != '\n') ++i;
    } else if (std::isdigit(static_cast<unsigned char>(bytes[i]))) {
      const std::size_t begin = i;
      while (i < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[i]))) ++i;
      numbers.emplace_back(begin, i);
    }
  }
  const char* kValues[] = {"0", "1", "2", "255", "256", "8192", "8193", "65535", "65536", "4294967297",
                           "99999999999999999999", "-1", ""};
  const auto [begin, end] = numbers[mutator.below(numbers.size())];
  const std::string value = kValues[mutator.below(std::size(kValues))];
  what = "header number \"" + bytes.substr(begin, end - begin) + "\" replaced by \"" + value + "\"";
  bytes.replace(begin, end - begin, value);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// The child process that runs a batch of mutations.

/// What the child was doing, for the signal handler to print if it dies there.
char g_current[512] = "";

void report_death(int signal_number) {
  const char* name = signal_number == SIGALRM ? "hang (alarm)" : strsignal(signal_number);
  char line[700];
  const int n = std::snprintf(line, sizeof line, "died of %s during: %s\n", name, g_current);
  if (n > 0 && ::write(STDERR_FILENO, line, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1)) < 0) {
    // Nothing more can be done: the exit status still says what happened.
  }
  std::_Exit(4);
}

/// One mutated input and the fuzz target that checks it.
struct Case {
  std::string what;
  std::string input;  // with the target's mode byte in front where it has one
};

/// Runs `count` cases made by `make` (given the case number) through `target` in this (child)
/// process, then exits: 0 after printing "<label>: <count> mutations, <r> read, <e> refused",
/// 1 if a check failed or an unexpected exception escaped, 4 on a signal or a hang.
[[noreturn]] void run_cases(const std::string& label, int count, const std::function<Case(int)>& make,
                            fuzz::Outcome (*target)(fuzz::Input)) {
  // 256 MiB: more than any valid file here needs, far less than a size taken from a hostile header
  // would ask for.
  if (!fuzz::cap_address_space(std::size_t{256} << 20)) std::_Exit(3);
  for (int signal_number : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGALRM}) std::signal(signal_number, report_death);
  ::alarm(60);
  int read = 0, refused = 0;
  for (int i = 0; i < count; ++i) {
    const Case c = make(i);
    std::snprintf(g_current, sizeof g_current, "%s case %d: %s", label.c_str(), i, c.what.c_str());
    try {
      const fuzz::Outcome outcome = target({reinterpret_cast<const std::uint8_t*>(c.input.data()), c.input.size()});
      ++(outcome == fuzz::Outcome::Read ? read : refused);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n  -> %s\n", g_current, e.what());
      std::_Exit(1);
    }
  }
  std::fprintf(stderr, "%s: %d mutations, %d read, %d refused\n", label.c_str(), count, read, refused);
  std::_Exit(0);
}

/// The summary run_cases prints when `count` mutations ended well and neither outcome was absent
/// (all refused would mean the mutations never left the readers' first checks).
std::string summary(int count) { return std::to_string(count) + " mutations, [1-9][0-9]* read, [1-9][0-9]* refused"; }

Case with_mode(char mode, std::string what, const Bytes& file) { return {std::move(what), mode + file}; }

// ---------------------------------------------------------------------------------------------
// Tests: 2 x 1500 IDX raw, 2 x 1000 IDX gzip, 2000 safetensors, 2000 PNG, 1000 PGM = 10,000.

fuzz::Input input_of(const Bytes& bytes) { return {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}; }

TEST(Mutation, UnmutatedFilesAreRead) {
  for (char mode : {'\0', '\2'}) {
    EXPECT_EQ(fuzz::idx_input(input_of(mode + idx_images())), fuzz::Outcome::Read);
    EXPECT_EQ(fuzz::idx_input(input_of(static_cast<char>(mode | 1) + idx_labels())), fuzz::Outcome::Read);
  }
  EXPECT_EQ(fuzz::safetensors_input(input_of(safetensors_file())), fuzz::Outcome::Read);
  for (std::uint32_t format : std::initializer_list<std::uint32_t>{PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB, PNG_FORMAT_RGBA,
                               PNG_FORMAT_RGB_COLORMAP, PNG_FORMAT_LINEAR_Y})
    EXPECT_EQ(fuzz::image_input(input_of('\0' + png_file(7, 5, format))), fuzz::Outcome::Read) << format;
  for (const Bytes& pgm : {pgm_p5(), pgm_p5_16bit(), pgm_p2()})
    EXPECT_EQ(fuzz::image_input(input_of('\0' + pgm)), fuzz::Outcome::Read) << pgm;
}

TEST(Mutation, IdxRawFilesAreReadCorrectlyOrRefused) {
  for (const auto& [label, file, mode] : {std::tuple{"idx images", idx_images(), '\0'},
                                          std::tuple{"idx labels", idx_labels(), '\1'}}) {
    EXPECT_EXIT(run_cases(label, 1500, [&, file = file, mode = mode](int i) {
      Mutator mutator(1000 + static_cast<std::uint64_t>(i));
      std::string what;
      const Bytes mutated = mutate_idx(mutator, file, what);
      return with_mode(mode, what, mutated);
    }, fuzz::idx_input), ::testing::ExitedWithCode(0), summary(1500)) << label;
  }
}

TEST(Mutation, IdxGzipFilesAreReadCorrectlyOrRefused) {
  // Half the cases mutate the content and let the target compress it (checked against the
  // reference reading); half mutate the compressed bytes themselves (corrupt streams).
  for (const auto& [label, file, mode] : {std::tuple{"idx images gz", idx_images(), '\0'},
                                          std::tuple{"idx labels gz", idx_labels(), '\1'}}) {
    const Bytes compressed = gzip(file);
    EXPECT_EXIT(run_cases(label, 1000, [&, file = file, mode = mode](int i) {
      Mutator mutator(2000 + static_cast<std::uint64_t>(i));
      std::string what;
      if (i % 2 == 0) {
        const Bytes mutated = mutate_idx(mutator, file, what);
        return with_mode(static_cast<char>(mode | 2), what + " (then gzipped)", mutated);
      }
      const Bytes mutated = mutator.generic(compressed, what);
      return with_mode(mode, what + " (in the gzip stream)", mutated);
    }, fuzz::idx_input), ::testing::ExitedWithCode(0), summary(1000)) << label;
  }
}

TEST(Mutation, SafetensorsFilesAreReadCorrectlyOrRefused) {
  const Bytes file = safetensors_file();
  EXPECT_EXIT(run_cases("safetensors", 2000, [&](int i) {
    Mutator mutator(3000 + static_cast<std::uint64_t>(i));
    std::string what;
    const Bytes mutated = mutate_safetensors(mutator, file, what);
    return Case{what, mutated};
  }, fuzz::safetensors_input), ::testing::ExitedWithCode(0), summary(2000));
}

TEST(Mutation, PngFilesAreDecodedAndPreprocessedOrRefused) {
  const std::vector<Bytes> files = {
      png_file(12, 10, PNG_FORMAT_GRAY), png_file(9, 7, PNG_FORMAT_GA), png_file(8, 8, PNG_FORMAT_RGB),
      png_file(7, 9, PNG_FORMAT_RGBA), png_file(10, 6, PNG_FORMAT_RGB_COLORMAP),
      png_file(6, 6, PNG_FORMAT_LINEAR_Y)};
  EXPECT_EXIT(run_cases("png", 2000, [&](int i) {
    Mutator mutator(4000 + static_cast<std::uint64_t>(i));
    std::string what;
    const std::size_t which = static_cast<std::size_t>(i) % files.size();
    const Bytes mutated = mutate_png(mutator, files[which], what);
    return with_mode('\0', "png " + std::to_string(which) + ": " + what, mutated);
  }, fuzz::image_input), ::testing::ExitedWithCode(0), summary(2000));
}

TEST(Mutation, PgmFilesAreDecodedAndPreprocessedOrRefused) {
  const std::vector<Bytes> files = {pgm_p5(), pgm_p5_16bit(), pgm_p2()};
  EXPECT_EXIT(run_cases("pgm", 1000, [&](int i) {
    Mutator mutator(5000 + static_cast<std::uint64_t>(i));
    std::string what;
    const std::size_t which = static_cast<std::size_t>(i) % files.size();
    const Bytes mutated = mutate_pgm(mutator, files[which], what);
    return with_mode('\0', "pgm " + std::to_string(which) + ": " + what, mutated);
  }, fuzz::image_input), ::testing::ExitedWithCode(0), summary(1000));
}

}  // namespace
