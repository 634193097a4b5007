// PNG/PGM decoding and encoding, MNIST-style preprocessing of a digit picture, the captioned grid.
#include "models/data/digit_image.hpp"

#include <png.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "autograd/variable.hpp"

namespace nn {

namespace {

[[noreturn]] void image_error(std::string_view name, const std::string& problem) {
  throw ImageError(std::string(name) + ": " + problem);
}

void check_side(std::string_view name, std::string_view what, std::uint64_t side) {
  if (side < 1 || side > static_cast<std::uint64_t>(kMaxDecodedSide))
    image_error(name, std::string(what) + " " + std::to_string(side) + " is outside [1, " +
                          std::to_string(kMaxDecodedSide) + "]");
}

constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);

/// libpng allocates a buffer of each chunk's declared length before reading the chunk, whatever
/// the data really holds: a 70-byte file can make it ask for 900 MB (found by fuzzing). So each
/// chunk is first checked to lie within the bytes given, up to IEND. A chunk name that is not
/// printable is shown as '?'s, to keep the message one line.
void check_png_chunk_lengths(std::string_view bytes, std::string_view name) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])); };
  std::size_t at = kPngSignature.size();
  while (at + 8 <= bytes.size()) {
    const std::uint32_t length = (byte(at) << 24) | (byte(at + 1) << 16) | (byte(at + 2) << 8) | byte(at + 3);
    std::string type(bytes.substr(at + 4, 4));
    for (char& c : type)
      if (!std::isalpha(static_cast<unsigned char>(c))) c = '?';
    const std::size_t remaining = bytes.size() - at - 8;  // after the length and type fields
    if (length > remaining || remaining - length < 4)     // 4: the CRC
      image_error(name, "truncated PNG: chunk " + type + " at byte " + std::to_string(at) + " declares " +
                            std::to_string(length) + " bytes of data, but only " + std::to_string(remaining) +
                            " bytes follow its header, CRC included");
    if (type == "IEND") return;
    at += 12 + static_cast<std::size_t>(length);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// PNG, through libpng's simplified API: it catches libpng's longjmp errors itself and reports them
// in image.message, so no setjmp reaches this code.

GrayImage decode_png(std::string_view bytes, std::string_view name) {
  if (!bytes.starts_with(kPngSignature.substr(0, std::min(bytes.size(), kPngSignature.size()))))
    image_error(name, "not a PNG file (bad signature)");
  if (bytes.size() <= kPngSignature.size())
    image_error(name, "truncated PNG: " + std::to_string(bytes.size()) + " bytes");
  check_png_chunk_lengths(bytes, name);
  png_image png{};  // libpng requires a zeroed struct with the version set
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size()))
    image_error(name, std::string("unreadable PNG header: ") + png.message);
  // From here until png_image_finish_read the struct owns libpng state that must be freed.
  if (png.width < 1 || png.width > kMaxDecodedSide || png.height < 1 ||
      png.height > kMaxDecodedSide) {
    const std::uint32_t width = png.width, height = png.height;
    png_image_free(&png);
    check_side(name, "PNG width", width);
    check_side(name, "PNG height", height);
  }
  png.format = PNG_FORMAT_GRAY;
  png.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  std::vector<png_byte> gray(PNG_IMAGE_SIZE(png));
  const png_color white{255, 255, 255};  // what transparent pixels are composited over
  if (!png_image_finish_read(&png, &white, gray.data(), /* row_stride = minimal */ 0, nullptr))
    image_error(name, std::string("corrupt or truncated PNG: ") + png.message);

  GrayImage image{.width = png.width, .height = png.height, .pixels = {}};
  image.pixels.assign(gray.begin(), gray.end());
  return image;
}

std::string encode_png(const GrayImage& image) {
  if (image.width < 1 || image.height < 1 || image.width > 0x7fffffff / 4 ||
      image.height > 0x7fffffff / 4)
    throw std::invalid_argument("encode_png: size " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + " cannot be written");
  if (static_cast<std::int64_t>(image.pixels.size()) != image.width * image.height)
    throw std::invalid_argument("encode_png: " + std::to_string(image.pixels.size()) +
                                " pixels for a " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + " image");
  std::vector<png_byte> gray(image.pixels.size());
  for (std::size_t i = 0; i < gray.size(); ++i) {
    const float v = image.pixels[i];
    gray[i] = static_cast<png_byte>(std::isnan(v) ? 0.0F : std::clamp(std::round(v), 0.0F, 255.0F));
  }
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  if (!png_image_write_get_memory_size(png, size, /* convert_to_8_bit = */ 0, gray.data(), 0,
                                       nullptr))
    throw std::runtime_error(std::string("encode_png: ") + png.message);
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&png, out.data(), &size, 0, gray.data(), 0, nullptr))
    throw std::runtime_error(std::string("encode_png: ") + png.message);
  out.resize(size);
  return out;
}

// ---------------------------------------------------------------------------------------------
// PGM (Netpbm): "P2"|"P5", whitespace, width, height, maxval (comments "#...\n" allowed between),
// one whitespace character, then the samples.

namespace {

class PgmReader {
 public:
  PgmReader(std::string_view bytes, std::string_view name) : bytes_(bytes), name_(name) {}

  void skip_space_and_comments() {
    while (pos_ < bytes_.size()) {
      const char c = bytes_[pos_];
      if (c == '#') {
        while (pos_ < bytes_.size() && bytes_[pos_] != '\n' && bytes_[pos_] != '\r') ++pos_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else {
        return;
      }
    }
  }

  /// A decimal number; `what` names it in errors. Values are capped so nothing can overflow.
  std::uint64_t number(std::string_view what) {
    skip_space_and_comments();
    if (pos_ >= bytes_.size())
      image_error(name_, "truncated PGM: " + std::string(what) + " missing");
    if (!std::isdigit(static_cast<unsigned char>(bytes_[pos_])))
      image_error(name_, "bad PGM: " + std::string(what) + " is not a number");
    std::uint64_t value = 0;
    while (pos_ < bytes_.size() && std::isdigit(static_cast<unsigned char>(bytes_[pos_]))) {
      value = value * 10 + static_cast<std::uint64_t>(bytes_[pos_] - '0');
      if (value > kCap) image_error(name_, "bad PGM: " + std::string(what) + " is too large");
      ++pos_;
    }
    return value;
  }

  std::size_t position() const { return pos_; }
  void advance(std::size_t n) { pos_ += n; }
  std::size_t remaining() const { return bytes_.size() - pos_; }
  unsigned char byte(std::size_t offset) const {
    return static_cast<unsigned char>(bytes_[pos_ + offset]);
  }

 private:
  static constexpr std::uint64_t kCap = 1'000'000'000;
  std::string_view bytes_;
  std::string_view name_;
  std::size_t pos_ = 0;
};

}  // namespace

GrayImage decode_pgm(std::string_view bytes, std::string_view name) {
  if (bytes.size() < 2 || bytes[0] != 'P' || (bytes[1] != '2' && bytes[1] != '5'))
    image_error(name, "not a PGM file (expected P2 or P5)");
  const bool plain = bytes[1] == '2';
  PgmReader reader(bytes, name);
  reader.advance(2);
  // Netpbm puts whitespace (or a comment) after the magic: "P23 1 255" is not a 3-pixel-wide PGM.
  if (bytes.size() < 3 || !(std::isspace(static_cast<unsigned char>(bytes[2])) || bytes[2] == '#'))
    image_error(name, "bad PGM: no whitespace after the magic number P" + std::string(1, bytes[1]));
  const std::uint64_t width = reader.number("width");
  const std::uint64_t height = reader.number("height");
  const std::uint64_t maxval = reader.number("maxval");
  check_side(name, "PGM width", width);
  check_side(name, "PGM height", height);
  if (maxval < 1 || maxval > 65535)
    image_error(name, "PGM maxval " + std::to_string(maxval) + " is outside [1, 65535]");
  const std::uint64_t count = width * height;
  // In double, sample * 255 / maxval is 255 exactly for sample == maxval; a float factor
  // 255 / maxval can overshoot (505 * (255 / 505) = 255.00002, found by fuzzing).
  const auto to_255 = [maxval](std::uint64_t sample) {
    return static_cast<float>(static_cast<double>(sample) * 255.0 / static_cast<double>(maxval));
  };

  GrayImage image{.width = static_cast<std::int64_t>(width),
                  .height = static_cast<std::int64_t>(height),
                  .pixels = {}};
  auto check_sample = [&](std::uint64_t i, std::uint64_t sample) {
    if (sample > maxval)
      image_error(name, "PGM sample " + std::to_string(sample) + " at row " +
                            std::to_string(i / width) + ", column " + std::to_string(i % width) +
                            " exceeds maxval " + std::to_string(maxval));
  };
  if (plain) {
    // Each sample takes at least one digit and one separator: reject a short file before
    // allocating what its header asks for.
    if (reader.remaining() < 2 * count)
      image_error(name, "truncated PGM: " + std::to_string(count) + " samples declared, only " +
                            std::to_string(reader.remaining()) + " bytes follow the header");
    image.pixels.resize(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::uint64_t sample = reader.number("sample " + std::to_string(i));
      check_sample(i, sample);
      image.pixels[i] = to_255(sample);
    }
    return image;
  }
  // Raw: exactly one whitespace byte separates maxval from the raster (which may begin with bytes
  // that look like whitespace, so nothing more is skipped).
  if (reader.remaining() < 1 || !std::isspace(reader.byte(0)))
    image_error(name, "bad PGM: no whitespace after maxval");
  reader.advance(1);
  const std::uint64_t bytes_per_sample = maxval < 256 ? 1 : 2;
  if (reader.remaining() < count * bytes_per_sample)
    image_error(name, "truncated PGM: raster has " + std::to_string(reader.remaining()) +
                          " bytes, expected " + std::to_string(count * bytes_per_sample));
  image.pixels.resize(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::size_t at = i * bytes_per_sample;
    const std::uint64_t sample = bytes_per_sample == 1
                                     ? reader.byte(at)
                                     : (std::uint64_t{reader.byte(at)} << 8) | reader.byte(at + 1);
    check_sample(i, sample);
    image.pixels[i] = to_255(sample);
  }
  return image;
}

GrayImage decode_image(std::string_view bytes, std::string_view name) {
  if (bytes.empty()) image_error(name, "empty file");
  if (bytes[0] == '\x89') return decode_png(bytes, name);  // only PNG starts with 0x89
  if (bytes.size() >= 2 && bytes[0] == 'P') {
    if (bytes[1] == '2' || bytes[1] == '5') return decode_pgm(bytes, name);
    if (bytes[1] >= '1' && bytes[1] <= '7')
      image_error(name, std::string("a Netpbm P") + bytes[1] +
                            " image: only PGM graymaps (P2, P5) are supported");
  }
  if (bytes.starts_with("\xff\xd8\xff"))
    image_error(name, "a JPEG image: only PNG and PGM are supported");
  image_error(name, "not a PNG or PGM image (unrecognised signature)");
}

// ---------------------------------------------------------------------------------------------
// Preprocessing.

namespace {

constexpr std::int64_t kSide = 28;      // MNIST's frame
constexpr double kFitSide = 20.0;       // the box MNIST's digits were scaled into
constexpr double kTargetCentre = 14.0;  // MNIST's mean centre of mass, in pixel indices
constexpr float kBoxThreshold = 0.1F;   // of the maximum ink: fainter pixels do not stretch the box
constexpr std::int64_t kMargin = 8;  // output pixels kept around the box: 14 - 20/2, plus 4 spare

float median(std::vector<float> values) {
  const auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  return *mid;
}

/// One output sample of area-averaging: out[j] = sum over taps of in[index] * weight.
struct Tap {
  std::int64_t index;
  double weight;
};

/// Area-averaging weights along one axis: output pixel j covers input [origin + j * step,
/// origin + (j + 1) * step); each input pixel contributes the fraction of that interval it
/// overlaps. Input outside [0, in_size) is background and contributes nothing.
std::vector<std::vector<Tap>> area_taps(std::int64_t in_size, double origin, double step,
                                        std::int64_t out_size) {
  std::vector<std::vector<Tap>> taps(static_cast<std::size_t>(out_size));
  for (std::int64_t j = 0; j < out_size; ++j) {
    const double begin = origin + static_cast<double>(j) * step, end = begin + step;
    const auto first = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(begin)));
    const auto last = std::min(in_size, static_cast<std::int64_t>(std::ceil(end)));
    for (std::int64_t i = first; i < last; ++i) {
      const double overlap =
          std::min(end, static_cast<double>(i + 1)) - std::max(begin, static_cast<double>(i));
      if (overlap > 0) taps[static_cast<std::size_t>(j)].push_back({i, overlap / step});
    }
  }
  return taps;
}

}  // namespace

Digit preprocess_digit(const GrayImage& image) {
  const std::int64_t width = image.width, height = image.height;
  if (width < 1 || height < 1 || static_cast<std::int64_t>(image.pixels.size()) != width * height)
    throw std::invalid_argument("preprocess_digit: " + std::to_string(image.pixels.size()) +
                                " pixels for a " + std::to_string(width) + "x" +
                                std::to_string(height) + " image");
  if (!std::all_of(image.pixels.begin(), image.pixels.end(),
                   [](float v) { return std::isfinite(v); }))
    throw std::invalid_argument("preprocess_digit: the image has a NaN or infinite pixel");
  Digit digit{};

  // 1. Background from the border; the median ignores a stroke that touches the edge.
  std::vector<float> border;
  for (std::int64_t c = 0; c < width; ++c) {
    border.push_back(image.at(0, c));
    border.push_back(image.at(height - 1, c));
  }
  for (std::int64_t r = 0; r < height; ++r) {
    border.push_back(image.at(r, 0));
    border.push_back(image.at(r, width - 1));
  }
  const float background = median(std::move(border));
  const bool invert = background > 127.5F;
  const float background_ink = invert ? 255.0F - background : background;
  std::vector<float> ink(image.pixels.size());
  float max_ink = 0;
  for (std::size_t i = 0; i < ink.size(); ++i) {
    const float v = invert ? 255.0F - image.pixels[i] : image.pixels[i];
    ink[i] = std::max(0.0F, v - background_ink);
    max_ink = std::max(max_ink, ink[i]);
  }
  if (max_ink < kMinInkContrast) return digit;  // blank
  for (float& v : ink) v *= 255.0F / max_ink;

  // 2. Bounding box of the ink.
  std::int64_t top = height, bottom = -1, left = width, right = -1;
  for (std::int64_t r = 0; r < height; ++r)
    for (std::int64_t c = 0; c < width; ++c)
      if (ink[static_cast<std::size_t>(r * width + c)] > kBoxThreshold * 255.0F) {
        top = std::min(top, r), bottom = std::max(bottom, r);
        left = std::min(left, c), right = std::max(right, c);
      }
  const std::int64_t box_side = std::max(bottom - top + 1, right - left + 1);

  // 3. Scale so the box's longer side becomes 20: each output pixel averages `step` input pixels
  // per axis. The output grid starts kMargin pixels before the box, so the box's edges fall on
  // output pixel edges (a digit drawn k times larger comes back exactly); only the box and that
  // margin are resampled, which bounds the work and drops specks far from the digit.
  const double step = static_cast<double>(box_side) / kFitSide;
  auto output_size = [&](std::int64_t box_length) {  // the 1e-9 absorbs rounding in box / step
    return static_cast<std::int64_t>(std::ceil(static_cast<double>(box_length) / step - 1e-9)) +
           2 * kMargin;
  };
  const std::int64_t out_height = output_size(bottom - top + 1),
                     out_width = output_size(right - left + 1);
  const double row_origin = static_cast<double>(top) - static_cast<double>(kMargin) * step;
  const double col_origin = static_cast<double>(left) - static_cast<double>(kMargin) * step;
  const auto row_taps = area_taps(height, row_origin, step, out_height);
  const auto col_taps = area_taps(width, col_origin, step, out_width);

  // Columns first (the input rows the row taps reach x out_width), then rows.
  std::int64_t first_row = top, end_row = bottom + 1;
  for (const auto& taps : row_taps)
    for (const Tap& tap : taps)
      first_row = std::min(first_row, tap.index), end_row = std::max(end_row, tap.index + 1);
  std::vector<double> narrowed(static_cast<std::size_t>((end_row - first_row) * out_width), 0.0);
  for (std::int64_t r = first_row; r < end_row; ++r) {
    const float* in_row = &ink[static_cast<std::size_t>(r * width)];
    for (std::int64_t j = 0; j < out_width; ++j) {
      double sum = 0;
      for (const Tap& tap : col_taps[static_cast<std::size_t>(j)])
        sum += in_row[tap.index] * tap.weight;
      narrowed[static_cast<std::size_t>((r - first_row) * out_width + j)] = sum;
    }
  }
  std::vector<double> scaled(static_cast<std::size_t>(out_height * out_width), 0.0);
  double mass = 0, row_moment = 0, col_moment = 0;
  for (std::int64_t i = 0; i < out_height; ++i)
    for (std::int64_t j = 0; j < out_width; ++j) {
      double sum = 0;
      for (const Tap& tap : row_taps[static_cast<std::size_t>(i)])
        sum += narrowed[static_cast<std::size_t>((tap.index - first_row) * out_width + j)] *
               tap.weight;
      scaled[static_cast<std::size_t>(i * out_width + j)] = sum;
      mass += sum;
      row_moment += sum * static_cast<double>(i);
      col_moment += sum * static_cast<double>(j);
    }

  // 4. Whole-pixel shift that brings the centre of mass nearest to MNIST's.
  const auto shift_rows = static_cast<std::int64_t>(std::round(kTargetCentre - row_moment / mass));
  const auto shift_cols = static_cast<std::int64_t>(std::round(kTargetCentre - col_moment / mass));
  for (std::int64_t i = 0; i < out_height; ++i)
    for (std::int64_t j = 0; j < out_width; ++j) {
      const std::int64_t r = i + shift_rows, c = j + shift_cols;
      if (r < 0 || r >= kSide || c < 0 || c >= kSide) continue;
      const double v = scaled[static_cast<std::size_t>(i * out_width + j)];
      digit[static_cast<std::size_t>(r * kSide + c)] =
          static_cast<float>(std::clamp(v, 0.0, 255.0));
    }
  return digit;
}

bool is_blank(const Digit& digit) {
  return std::all_of(digit.begin(), digit.end(), [](float v) { return v == 0.0F; });
}

ag::Tensor to_input_tensor(const Digit& digit, const Normalization& normalization) {
  ag::Tensor input({1, 1, kSide, kSide}, ag::DType::Float32);
  float* x = input.data<float>();
  for (std::size_t i = 0; i < digit.size(); ++i)
    x[i] = static_cast<float>((digit[i] / 255.0 - normalization.mean) / normalization.std);
  return input;
}

Digit digit_from_image_bytes(std::string_view bytes, std::string_view name) {
  return preprocess_digit(decode_image(bytes, name));
}

// ---------------------------------------------------------------------------------------------
// The captioned grid and its 3x5 font. Each glyph is five octal digits, one per row from the top,
// each digit's three bits the row's pixels from the left: 7 = ###, 5 = #.#, 2 = .#., 1 = ..#

namespace {

struct Glyph {
  char c;
  std::uint16_t rows;
};

constexpr Glyph kFont[] = {
    {'0', 075557}, {'1', 026227}, {'2', 071747}, {'3', 071317}, {'4', 055711}, {'5', 074717},
    {'6', 074757}, {'7', 071122}, {'8', 075757}, {'9', 075717}, {'A', 025755}, {'B', 065656},
    {'C', 034443}, {'D', 065556}, {'E', 074647}, {'F', 074644}, {'G', 034553}, {'H', 055755},
    {'I', 072227}, {'J', 011152}, {'K', 055655}, {'L', 044447}, {'M', 057755}, {'N', 065555},
    {'O', 025552}, {'P', 065644}, {'Q', 025563}, {'R', 065655}, {'S', 034216}, {'T', 072222},
    {'U', 055557}, {'V', 055552}, {'W', 055775}, {'X', 055255}, {'Y', 055222}, {'Z', 071247},
    {' ', 000000}, {'>', 042124}, {'<', 012421}, {':', 002020}, {'.', 000002}, {'-', 000700},
    {'+', 002720}, {'=', 007070}, {'/', 011244}, {'%', 051245}, {'?', 071302}, {'#', 057575},
    {'(', 012221}, {')', 042224},
};

std::uint16_t glyph_rows(char c) {
  const char upper = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont)
    if (g.c == upper) return g.rows;
  return glyph_rows('?');
}

/// Draws `text` in black with its top-left corner at (top, left), each font pixel a px x px square.
void draw_text(GrayImage& image, std::string_view text, std::int64_t top, std::int64_t left,
               std::int64_t px) {
  for (std::size_t k = 0; k < text.size(); ++k) {
    const std::uint16_t rows = glyph_rows(text[k]);
    const std::int64_t glyph_left = left + static_cast<std::int64_t>(k) * 4 * px;
    for (int gr = 0; gr < 5; ++gr)
      for (int gc = 0; gc < 3; ++gc) {
        if (!((rows >> ((4 - gr) * 3 + (2 - gc))) & 1)) continue;
        for (std::int64_t y = 0; y < px; ++y)
          for (std::int64_t x = 0; x < px; ++x) {
            const std::int64_t r = top + gr * px + y, c = glyph_left + gc * px + x;
            if (r >= 0 && r < image.height && c >= 0 && c < image.width)
              image.pixels[static_cast<std::size_t>(r * image.width + c)] = 0.0F;
          }
      }
  }
}

}  // namespace

std::int64_t image_grid_gap(int scale) { return scale; }
std::int64_t image_grid_caption_height(int scale) { return 7 * std::int64_t{scale}; }

GrayImage image_grid(const std::vector<Digit>& digits, const std::vector<std::string>& captions,
                     int columns, int scale) {
  if (digits.empty()) throw std::invalid_argument("image_grid: no digits");
  if (captions.size() != digits.size())
    throw std::invalid_argument("image_grid: " + std::to_string(digits.size()) + " digits but " +
                                std::to_string(captions.size()) + " captions");
  if (columns < 1) throw std::invalid_argument("image_grid: columns must be >= 1");
  if (scale < 1 || scale > 16) throw std::invalid_argument("image_grid: scale must be in [1, 16]");
  const auto count = static_cast<std::int64_t>(digits.size());
  const std::int64_t cols = std::min<std::int64_t>(columns, count);
  const std::int64_t rows = (count + cols - 1) / cols;
  const std::int64_t gap = image_grid_gap(scale), tile = kSide * scale;
  const std::int64_t cell_width = tile + 2 * gap;
  const std::int64_t cell_height = tile + image_grid_caption_height(scale) + 2 * gap;

  GrayImage grid{.width = cols * cell_width, .height = rows * cell_height, .pixels = {}};
  grid.pixels.assign(static_cast<std::size_t>(grid.width * grid.height), 255.0F);
  const std::int64_t max_chars = (cell_width / scale + 1) / 4;  // a glyph is 3 wide plus 1 space
  for (std::int64_t n = 0; n < count; ++n) {
    const std::int64_t top = (n / cols) * cell_height + gap, left = (n % cols) * cell_width + gap;
    const Digit& digit = digits[static_cast<std::size_t>(n)];
    for (std::int64_t r = 0; r < tile; ++r)
      for (std::int64_t c = 0; c < tile; ++c)
        grid.pixels[static_cast<std::size_t>((top + r) * grid.width + left + c)] = std::clamp(
            digit[static_cast<std::size_t>((r / scale) * kSide + c / scale)], 0.0F, 255.0F);
    const std::string_view caption = std::string_view(captions[static_cast<std::size_t>(n)])
                                         .substr(0, static_cast<std::size_t>(max_chars));
    const auto text_width = (4 * static_cast<std::int64_t>(caption.size()) - 1) * scale;
    draw_text(grid, caption, top + tile + scale, left + (tile - text_width) / 2, scale);
  }
  return grid;
}

}  // namespace nn
