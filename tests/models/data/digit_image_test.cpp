// Tests for models/digit_image: PNG/PGM decoding of good and hostile input, MNIST-style
// preprocessing, the model-input tensor, and the captioned grid.
#include "models/data/digit_image.hpp"

#include <gtest/gtest.h>
#include <png.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

namespace nn {
namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

/// A PNG written by libpng from 8-bit samples in the given simplified-API format.
std::string write_png(std::uint32_t width, std::uint32_t height, std::uint32_t format,
                      const std::vector<std::uint8_t>& samples) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = width;
  png.height = height;
  png.format = format;
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_get_memory_size(png, size, 0, samples.data(), 0, nullptr))
      << png.message;
  std::string out(size, '\0');
  EXPECT_TRUE(png_image_write_to_memory(&png, out.data(), &size, 0, samples.data(), 0, nullptr));
  out.resize(size);
  return out;
}

GrayImage filled(std::int64_t width, std::int64_t height, float value) {
  return {.width = width,
          .height = height,
          .pixels = std::vector<float>(static_cast<std::size_t>(width * height), value)};
}

void fill_rect(GrayImage& image, std::int64_t top, std::int64_t left, std::int64_t bottom,
               std::int64_t right, float value) {
  for (std::int64_t r = top; r < bottom; ++r)
    for (std::int64_t c = left; c < right; ++c)
      image.pixels[static_cast<std::size_t>(r * image.width + c)] = value;
}

/// The message of the ImageError `f` throws, or "" (and a test failure) if it throws none.
template <class F>
std::string image_error_of(F&& f) {
  try {
    f();
  } catch (const ImageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ImageError thrown";
  return "";
}

struct Moments {
  double mass = 0, row = 0, col = 0;
};
Moments centre_of_mass(const Digit& d) {
  Moments m;
  for (int r = 0; r < 28; ++r)
    for (int c = 0; c < 28; ++c) {
      const double v = d[static_cast<std::size_t>(r * 28 + c)];
      m.mass += v, m.row += v * r, m.col += v * c;
    }
  m.row /= m.mass, m.col /= m.mass;
  return m;
}

struct Box {
  int top = 28, bottom = -1, left = 28, right = -1;
  int height() const { return bottom - top + 1; }
  int width() const { return right - left + 1; }
};
Box ink_box(const Digit& d, float threshold) {
  Box b;
  for (int r = 0; r < 28; ++r)
    for (int c = 0; c < 28; ++c)
      if (d[static_cast<std::size_t>(r * 28 + c)] > threshold) {
        b.top = std::min(b.top, r), b.bottom = std::max(b.bottom, r);
        b.left = std::min(b.left, c), b.right = std::max(b.right, c);
      }
  return b;
}

double mean_abs_difference(const Digit& a, const Digit& b) {
  double total = 0;
  for (std::size_t i = 0; i < a.size(); ++i) total += std::abs(a[i] - b[i]);
  return total / static_cast<double>(a.size());
}

/// The first `count` MNIST test images, read straight from the raw IDX file (16-byte header, then
/// 28x28 bytes per image); empty when the file is absent, so those tests skip.
std::vector<Digit> mnist_test_digits(std::size_t count) {
  std::ifstream in("data/mnist/t10k-images-idx3-ubyte", std::ios::binary);
  if (!in) return {};
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<Digit> digits;
  for (std::size_t n = 0; n < count && 16 + (n + 1) * 784 <= bytes.size(); ++n) {
    Digit d;
    for (std::size_t i = 0; i < 784; ++i)
      d[i] = static_cast<unsigned char>(bytes[16 + n * 784 + i]);
    digits.push_back(d);
  }
  return digits;
}

// ---------------------------------------------------------------------------------------------
// PNG

TEST(DecodePng, GrayRoundTripIsExact) {
  GrayImage image = filled(17, 5, 0);
  for (std::size_t i = 0; i < image.pixels.size(); ++i)
    image.pixels[i] = static_cast<float>((i * 3) % 256);
  const GrayImage back = decode_png(encode_png(image));
  EXPECT_EQ(back.width, 17);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.pixels, image.pixels);
}

TEST(EncodePng, RoundsAndClampsPixels) {
  GrayImage image{.width = 4, .height = 1, .pixels = {-20.0F, 12.4F, 12.6F, 300.0F}};
  EXPECT_EQ(decode_png(encode_png(image)).pixels, (std::vector<float>{0, 12, 13, 255}));
}

TEST(EncodePng, RejectsPixelCountThatDoesNotMatchSize) {
  EXPECT_THROW(encode_png({.width = 3, .height = 2, .pixels = std::vector<float>(5)}),
               std::invalid_argument);
  EXPECT_THROW(encode_png({.width = 0, .height = 0, .pixels = {}}), std::invalid_argument);
}

TEST(DecodePng, RgbaTransparentBackgroundIsCompositedOverWhite) {
  // 3x1: fully transparent (its colour must not matter), opaque black ink, opaque white.
  const std::vector<std::uint8_t> rgba = {0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255};
  const GrayImage image = decode_png(write_png(3, 1, PNG_FORMAT_RGBA, rgba), "canvas.png");
  EXPECT_EQ(image.pixels, (std::vector<float>{255, 0, 255}));
}

TEST(DecodePng, GrayAlphaHalfTransparentBlackIsMidGray) {
  const std::vector<std::uint8_t> gray_alpha = {0, 128};
  const GrayImage image = decode_png(write_png(1, 1, PNG_FORMAT_GA, gray_alpha));
  // Composited in linear light: 50% black over white is linear 0.5, sRGB-encoded 188.
  EXPECT_NEAR(image.pixels[0], 188, 3);
}

TEST(DecodePng, RgbBecomesLuminance) {
  // Pure red has linear luminance 0.2126, which sRGB-encodes to 0.4985 * 255 = 127.1.
  const std::vector<std::uint8_t> rgb = {0, 0, 0, 255, 255, 255, 255, 0, 0};
  const GrayImage image = decode_png(write_png(3, 1, PNG_FORMAT_RGB, rgb));
  EXPECT_EQ(image.pixels[0], 0);
  EXPECT_EQ(image.pixels[1], 255);
  EXPECT_NEAR(image.pixels[2], 127.1, 2);
}

TEST(DecodePng, EveryTruncationIsACleanError) {
  GrayImage image = filled(9, 7, 255);
  fill_rect(image, 2, 2, 5, 4, 0);
  const std::string png = encode_png(image);
  for (std::size_t length = 0; length < png.size() - 12; ++length) {  // the last 12 bytes are IEND
    const std::string message =
        image_error_of([&] { decode_png(png.substr(0, length), "cut.png"); });
    EXPECT_TRUE(message.starts_with("cut.png: ")) << "length " << length << ": " << message;
  }
}

TEST(DecodePng, CorruptedBytesDecodeOrFailCleanly) {
  const std::string png = encode_png(filled(8, 8, 200));
  for (std::size_t i = 0; i < png.size(); ++i) {
    std::string bad = png;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    try {
      const GrayImage image = decode_png(bad);
      EXPECT_EQ(static_cast<std::int64_t>(image.pixels.size()), image.width * image.height);
    } catch (const ImageError&) {
    }
  }
}

TEST(DecodePng, SideAboveLimitIsRejectedBeforeDecoding) {
  // Patch IHDR's width (bytes 16..19) to 9000 and fix the chunk's CRC (over bytes 12..28).
  std::string png = encode_png(filled(1, 1, 0));
  const std::uint32_t width = 9000;
  for (int k = 0; k < 4; ++k) png[16 + k] = static_cast<char>((width >> (24 - 8 * k)) & 0xff);
  const auto crc =
      static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17));
  for (int k = 0; k < 4; ++k) png[29 + k] = static_cast<char>((crc >> (24 - 8 * k)) & 0xff);
  EXPECT_EQ(image_error_of([&] { decode_png(png, "wide.png"); }),
            "wide.png: PNG width 9000 is outside [1, 8192]");
}

// ---------------------------------------------------------------------------------------------
// PGM

TEST(DecodePgm, PlainWithCommentsAndSmallMaxval) {
  const GrayImage image = decode_pgm("P2\n# a comment\n3 2 # trailing\n15\n0 5 15\n\n 10 1  3\n");
  EXPECT_EQ(image.width, 3);
  EXPECT_EQ(image.height, 2);
  ASSERT_EQ(image.pixels.size(), 6U);
  EXPECT_FLOAT_EQ(image.pixels[0], 0);
  EXPECT_FLOAT_EQ(image.pixels[1], 85);
  EXPECT_FLOAT_EQ(image.pixels[2], 255);
  EXPECT_FLOAT_EQ(image.pixels[3], 170);
  EXPECT_FLOAT_EQ(image.pixels[5], 51);
}

TEST(DecodePgm, RawEightBit) {
  // The raster's first byte is a space (32): only one whitespace byte may follow maxval.
  const std::string pgm = std::string("P5 2 2 255\n") + std::string("\x20\x00\xff\x0a", 4);
  const GrayImage image = decode_pgm(pgm);
  EXPECT_EQ(image.pixels, (std::vector<float>{32, 0, 255, 10}));
}

TEST(DecodePgm, RawSixteenBitIsBigEndian) {
  const std::string pgm = std::string("P5\n2 1\n65535\n") + std::string("\xff\xff\x80\x00", 4);
  const GrayImage image = decode_pgm(pgm);
  EXPECT_FLOAT_EQ(image.pixels[0], 255);
  EXPECT_NEAR(image.pixels[1], 32768.0 * 255 / 65535, 1e-3);
}

TEST(DecodePgm, BadHeadersAreCleanErrors) {
  EXPECT_EQ(image_error_of([] { decode_pgm("P5 0 4 255\n", "z.pgm"); }),
            "z.pgm: PGM width 0 is outside [1, 8192]");
  EXPECT_EQ(image_error_of([] { decode_pgm("P5 4 0 255\n", "z.pgm"); }),
            "z.pgm: PGM height 0 is outside [1, 8192]");
  // Huge dimensions are refused from the header alone, before any allocation.
  EXPECT_EQ(image_error_of([] { decode_pgm("P5 100000 100000 255\n", "big.pgm"); }),
            "big.pgm: PGM width 100000 is outside [1, 8192]");
  EXPECT_EQ(image_error_of([] { decode_pgm("P2 99999999999999 1 255\n", "x.pgm"); }),
            "x.pgm: bad PGM: width is too large");
  EXPECT_EQ(image_error_of([] { decode_pgm("P5 2 2 0\n", "m.pgm"); }),
            "m.pgm: PGM maxval 0 is outside [1, 65535]");
  EXPECT_EQ(image_error_of([] { decode_pgm("P5 2 2 70000\n", "m.pgm"); }),
            "m.pgm: PGM maxval 70000 is outside [1, 65535]");
  EXPECT_EQ(image_error_of([] { decode_pgm("P5 2 x 255\n", "h.pgm"); }),
            "h.pgm: bad PGM: height is not a number");
  EXPECT_EQ(image_error_of([] { decode_pgm("P2 2 2", "h.pgm"); }),
            "h.pgm: truncated PGM: maxval missing");
}

TEST(DecodePgm, TruncatedRasterIsACleanError) {
  EXPECT_EQ(image_error_of([] { decode_pgm(std::string("P5 3 3 255\n") + "abcd", "t.pgm"); }),
            "t.pgm: truncated PGM: raster has 4 bytes, expected 9");
  EXPECT_NO_THROW(decode_pgm("P5 2 2 65535\n12345678"));  // exactly enough
  EXPECT_NE(
      image_error_of([] { decode_pgm("P2 8192 8192 255\n1 2 3\n", "p.pgm"); }).find("truncated"),
      std::string::npos);
  EXPECT_EQ(image_error_of([] { decode_pgm("P2 2 2 255\n1 2 3 \n   ", "p.pgm"); }),
            "p.pgm: truncated PGM: sample 3 missing");
}

TEST(DecodePgm, SampleAboveMaxvalIsAnError) {
  EXPECT_EQ(image_error_of([] { decode_pgm("P2 2 1 100\n5 101\n", "s.pgm"); }),
            "s.pgm: PGM sample 101 at row 0, column 1 exceeds maxval 100");
}

// ---------------------------------------------------------------------------------------------
// Sniffing

TEST(DecodeImage, ChoosesTheDecoderBySignatureNotByName) {
  const std::string png = encode_png(filled(2, 3, 7));
  EXPECT_EQ(decode_image(png, "looks-like.pgm").height, 3);
  EXPECT_EQ(decode_image("P2 1 1 255 9\n", "looks-like.png").pixels, std::vector<float>{9});
}

TEST(DecodeImage, UnknownFormatsNameTheFileAndTheProblem) {
  EXPECT_EQ(image_error_of([] { decode_image("GIF89a....", "a.gif"); }),
            "a.gif: not a PNG or PGM image (unrecognised signature)");
  EXPECT_EQ(image_error_of([] { decode_image("\xff\xd8\xff\xe0", "photo.jpg"); }),
            "photo.jpg: a JPEG image: only PNG and PGM are supported");
  EXPECT_EQ(image_error_of([] { decode_image("P6 1 1 255\nabc", "c.ppm"); }),
            "c.ppm: a Netpbm P6 image: only PGM graymaps (P2, P5) are supported");
  EXPECT_EQ(image_error_of([] { decode_image("", "empty.png"); }), "empty.png: empty file");
  EXPECT_EQ(image_error_of([] { decode_image("\x89PN", "short.png"); }),
            "short.png: truncated PNG: 3 bytes");
}

// ---------------------------------------------------------------------------------------------
// Preprocessing

TEST(PreprocessDigit, BarAtTopLeftOfWhiteCanvasIsCentredFittedAndInverted) {
  // A thick black "1" (80 tall, 12 wide) near the top-left corner of a 300x200 white canvas.
  GrayImage canvas = filled(300, 200, 255);
  fill_rect(canvas, /* top = */ 10, /* left = */ 15, /* bottom = */ 90, /* right = */ 27, 0);
  const Digit digit = preprocess_digit(canvas);

  const Moments m = centre_of_mass(digit);
  EXPECT_NEAR(m.row, 14.0, 0.5);
  EXPECT_NEAR(m.col, 14.0, 0.5);
  const Box box = ink_box(digit, 0);
  EXPECT_EQ(box.height(), 20);  // the longer side is scaled to exactly 20
  EXPECT_EQ(box.width(), 3);    // 12 * 20 / 80
  EXPECT_FLOAT_EQ(digit[static_cast<std::size_t>(14 * 28 + 14)], 255);  // ink high
  EXPECT_EQ(digit[0], 0);                                               // background 0
}

TEST(PreprocessDigit, LongerSideBecomesTwentyForAnyAspectAndSize) {
  struct Case {
    std::int64_t width, height, top, left, bottom, right;
  };
  for (const Case& k : {Case{500, 400, 300, 20, 340, 420},   // wide bar, far from the centre
                        Case{28, 28, 10, 12, 15, 15},        // small: scaled up
                        Case{1000, 50, 5, 900, 45, 931}}) {  // odd canvas, non-integer step
    GrayImage canvas = filled(k.width, k.height, 255);
    fill_rect(canvas, k.top, k.left, k.bottom, k.right, 0);
    const Digit digit = preprocess_digit(canvas);
    const Box box = ink_box(digit, 0.1F * 255);
    EXPECT_GE(std::max(box.height(), box.width()), 19) << k.width << "x" << k.height;
    EXPECT_LE(std::max(box.height(), box.width()), 20) << k.width << "x" << k.height;
    const Moments m = centre_of_mass(digit);
    EXPECT_NEAR(m.row, 14.0, 0.5) << k.width << "x" << k.height;
    EXPECT_NEAR(m.col, 14.0, 0.5) << k.width << "x" << k.height;
  }
}

TEST(PreprocessDigit, LightAndDarkBackgroundsGiveTheSameDigit) {
  GrayImage dark_on_light = filled(60, 80, 230);
  GrayImage light_on_dark = filled(60, 80, 25);
  // An L shape, so the centre of mass is not the box's centre.
  fill_rect(dark_on_light, 10, 10, 60, 20, 30), fill_rect(dark_on_light, 50, 10, 60, 40, 30);
  fill_rect(light_on_dark, 10, 10, 60, 20, 225), fill_rect(light_on_dark, 50, 10, 60, 40, 225);
  const Digit a = preprocess_digit(dark_on_light), b = preprocess_digit(light_on_dark);
  EXPECT_LT(mean_abs_difference(a, b), 1e-4);
  EXPECT_FLOAT_EQ(*std::max_element(a.begin(), a.end()), 255);  // contrast stretched
}

TEST(PreprocessDigit, StrokeTouchingTheBorderDoesNotFlipTheBackground) {
  // A stroke along the whole left edge: the border's mean would be pulled toward the ink, its
  // median is not.
  GrayImage canvas = filled(40, 40, 255);
  fill_rect(canvas, 0, 0, 40, 6, 0);
  const Digit digit = preprocess_digit(canvas);
  EXPECT_FLOAT_EQ(digit[static_cast<std::size_t>(14 * 28 + 14)], 255);
  EXPECT_EQ(digit[0], 0);
}

TEST(PreprocessDigit, BlankImagesGiveZeros) {
  EXPECT_TRUE(is_blank(preprocess_digit(filled(50, 40, 255))));
  EXPECT_TRUE(is_blank(preprocess_digit(filled(1, 1, 0))));
  GrayImage faint = filled(30, 30, 255);
  fill_rect(faint, 10, 10, 20, 20, 250);  // 5 grey levels: below kMinInkContrast
  EXPECT_TRUE(is_blank(preprocess_digit(faint)));
  fill_rect(faint, 10, 10, 20, 20, 200);
  EXPECT_FALSE(is_blank(preprocess_digit(faint)));
}

TEST(PreprocessDigit, SingleInkPixelIsHandled) {
  GrayImage canvas = filled(8192, 1, 255);
  canvas.pixels[8000] = 0;
  const Digit digit = preprocess_digit(canvas);
  const Moments m = centre_of_mass(digit);
  EXPECT_NEAR(m.col, 14.0, 0.5);
}

TEST(PreprocessDigit, RejectsInconsistentImage) {
  EXPECT_THROW(preprocess_digit({.width = 3, .height = 3, .pixels = std::vector<float>(8)}),
               std::invalid_argument);
  GrayImage with_nan = filled(4, 4, 255);
  with_nan.pixels[5] = std::nanf("");
  EXPECT_THROW(preprocess_digit(with_nan), std::invalid_argument);
}

TEST(PreprocessDigit, MnistDigitsComeBackAlmostUnchanged) {
  const std::vector<Digit> digits = mnist_test_digits(200);
  if (digits.empty()) GTEST_SKIP() << "data/mnist/t10k-images-idx3-ubyte not found";
  double total = 0, worst = 0;
  for (const Digit& original : digits) {
    GrayImage image = filled(28, 28, 0);
    std::copy(original.begin(), original.end(), image.pixels.begin());
    const double difference = mean_abs_difference(preprocess_digit(image), original);
    total += difference, worst = std::max(worst, difference);
  }
  const double mean = total / static_cast<double>(digits.size());
  std::cout << "[ info ] 28x28 MNIST digits: mean |difference| " << mean << ", worst " << worst
            << " grey levels over " << digits.size() << " digits\n";
  EXPECT_LT(mean, 0.05);  // only the stretch of digits whose maximum is 254 to 255
  EXPECT_LT(worst, 0.5);
}

TEST(PreprocessDigit, MnistDigitsRenderedBigAsPngComeBack) {
  const std::vector<Digit> digits = mnist_test_digits(200);
  if (digits.empty()) GTEST_SKIP() << "data/mnist/t10k-images-idx3-ubyte not found";
  // Each digit drawn 10x larger, dark ink on white paper, offset on a 400x360 canvas, saved as PNG.
  double total = 0, worst = 0;
  for (std::size_t n = 0; n < digits.size(); ++n) {
    const std::int64_t top = 17 + static_cast<std::int64_t>(n % 7) * 9,
                       left = 3 + static_cast<std::int64_t>(n % 5) * 23;
    GrayImage canvas = filled(400, 360, 255);
    for (std::int64_t r = 0; r < 280; ++r)
      for (std::int64_t c = 0; c < 280; ++c)
        canvas.pixels[static_cast<std::size_t>((top + r) * 400 + left + c)] =
            255 - digits[n][static_cast<std::size_t>((r / 10) * 28 + c / 10)];
    const Digit digit = preprocess_digit(decode_image(encode_png(canvas), "big.png"));
    const double difference = mean_abs_difference(digit, digits[n]);
    total += difference, worst = std::max(worst, difference);
  }
  const double mean = total / static_cast<double>(digits.size());
  std::cout << "[ info ] MNIST digits upscaled 10x in a PNG: mean |difference| " << mean
            << ", worst " << worst << " grey levels over " << digits.size() << " digits\n";
  EXPECT_LT(mean, 0.05);  // only the stretch of digits whose maximum is 254 to 255
  EXPECT_LT(worst, 0.5);
}

/// The digit redrawn `factor` times larger with bilinear interpolation (pixel centres aligned,
/// background beyond the edge), as dark ink on white paper: a smooth rendering at a size that is
/// not a whole multiple, like a digit drawn on a canvas.
GrayImage render_smoothly(const Digit& digit, double factor, std::int64_t canvas_side) {
  GrayImage canvas = filled(canvas_side, canvas_side, 255);
  auto source = [&](std::int64_t r, std::int64_t c) -> double {
    return r < 0 || r >= 28 || c < 0 || c >= 28 ? 0.0 : digit[static_cast<std::size_t>(r * 28 + c)];
  };
  for (std::int64_t y = 0; y < canvas_side; ++y)
    for (std::int64_t x = 0; x < canvas_side; ++x) {
      const double v = (static_cast<double>(y) + 0.5) / factor - 0.5,
                   u = (static_cast<double>(x) + 0.5) / factor - 0.5;
      const auto r = static_cast<std::int64_t>(std::floor(v)),
                 c = static_cast<std::int64_t>(std::floor(u));
      const double fv = v - static_cast<double>(r), fu = u - static_cast<double>(c);
      const double ink = (1 - fv) * ((1 - fu) * source(r, c) + fu * source(r, c + 1)) +
                         fv * ((1 - fu) * source(r + 1, c) + fu * source(r + 1, c + 1));
      canvas.pixels[static_cast<std::size_t>(y * canvas_side + x)] =
          static_cast<float>(std::round(255 - ink));
    }
  return canvas;
}

TEST(PreprocessDigit, MnistDigitsRenderedSmoothlyComeBackClose) {
  const std::vector<Digit> digits = mnist_test_digits(200);
  if (digits.empty()) GTEST_SKIP() << "data/mnist/t10k-images-idx3-ubyte not found";
  double total = 0, worst = 0, total_blurred_input = 0;
  for (const Digit& original : digits) {
    const Digit digit = preprocess_digit(
        decode_image(encode_png(render_smoothly(original, 7.3, 210)), "smooth.png"));
    const double difference = mean_abs_difference(digit, original);
    total += difference, worst = std::max(worst, difference);
    // For scale: the same digit shifted by one pixel differs from itself by this much.
    Digit shifted{};
    for (std::size_t i = 1; i < 784; ++i) shifted[i] = original[i - 1];
    total_blurred_input += mean_abs_difference(shifted, original);
  }
  const auto count = static_cast<double>(digits.size());
  std::cout << "[ info ] MNIST digits redrawn 7.3x bilinear: mean |difference| " << total / count
            << ", worst " << worst << " grey levels (a one-pixel shift costs "
            << total_blurred_input / count << ")\n";
  // Measured 7.96 mean, 20.1 worst: bilinear blur widens the strokes and the box by ~0.8 px,
  // which area-averaging back to 28x28 cannot undo; about half the cost of a one-pixel shift.
  EXPECT_LT(total / count, 9.0);
  EXPECT_LT(worst, 24.0);
}

// ---------------------------------------------------------------------------------------------
// Model input

TEST(ToInputTensor, NormalisesEachPixel) {
  Digit digit{};
  digit[0] = 255;
  digit[29] = 51;
  const ag::Tensor x = to_input_tensor(digit, {.mean = 0.1, .std = 0.5});
  EXPECT_EQ(x.shape(), (ag::Shape{1, 1, 28, 28}));
  EXPECT_EQ(x.dtype(), ag::DType::Float32);
  EXPECT_FLOAT_EQ(x.at(0), 1.8F);   // (1 - 0.1) / 0.5
  EXPECT_FLOAT_EQ(x.at(29), 0.2F);  // (0.2 - 0.1) / 0.5
  EXPECT_FLOAT_EQ(x.at(1), -0.2F);  // (0 - 0.1) / 0.5
}

// ---------------------------------------------------------------------------------------------
// Grid

TEST(ImageGrid, SizeFollowsTheDocumentedLayout) {
  const std::vector<Digit> digits(5, Digit{});
  const GrayImage grid = image_grid(digits, {"1", "2", "3", "4", "5"}, 3, 2);
  // cell = (56 + 2*2) wide, (56 + 14 + 2*2) tall; 3 columns, 2 rows.
  EXPECT_EQ(grid.width, 3 * 60);
  EXPECT_EQ(grid.height, 2 * 74);
  EXPECT_EQ(grid.pixels.size(), static_cast<std::size_t>(180 * 148));
  // Fewer digits than columns: the grid is only as wide as it needs to be.
  EXPECT_EQ(image_grid(std::vector<Digit>(2, Digit{}), {"", ""}, 10, 1).width, 2 * 30);
}

TEST(ImageGrid, TilesShowTheDigitsEnlarged) {
  Digit digit{};
  digit[3 * 28 + 5] = 200;
  const GrayImage grid = image_grid({digit}, {""}, 1, 3);
  const std::int64_t gap = image_grid_gap(3);
  for (std::int64_t y = 0; y < 3; ++y)
    for (std::int64_t x = 0; x < 3; ++x) EXPECT_EQ(grid.at(gap + 9 + y, gap + 15 + x), 200);
  EXPECT_EQ(grid.at(gap + 9 + 3, gap + 15), 0);
  EXPECT_EQ(grid.at(0, 0), 255);  // white paper around the tiles
}

TEST(ImageGrid, CaptionsPutDarkTextUnderTheirCell) {
  const int scale = 2;
  const std::vector<Digit> digits(4, Digit{});
  const GrayImage grid = image_grid(digits, {"7>2", "5", "", "0:1"}, 2, scale);
  const std::int64_t gap = image_grid_gap(scale), tile = 28 * scale;
  const std::int64_t cell_width = tile + 2 * gap,
                     cell_height = tile + image_grid_caption_height(scale) + 2 * gap;
  for (int n = 0; n < 4; ++n) {
    const std::int64_t top = (n / 2) * cell_height + gap + tile, left = (n % 2) * cell_width;
    std::int64_t first_dark = -1, last_dark = -1;
    for (std::int64_t r = top; r < (n / 2 + 1) * cell_height; ++r)
      for (std::int64_t c = left; c < left + cell_width; ++c)
        if (grid.at(r, c) < 128) {
          if (first_dark < 0 || c < first_dark) first_dark = c;
          last_dark = std::max(last_dark, c);
        }
    if (n == 2) {
      EXPECT_EQ(first_dark, -1) << "an empty caption draws nothing";
      continue;
    }
    ASSERT_GE(first_dark, 0) << "caption " << n;
    // "7>2" and "0:1": 3 glyphs of 3 columns with 1 between, all with ink in their outer columns
    // except ':' -- so the text spans 11 font pixels; "5" spans 3.
    const std::int64_t span = last_dark - first_dark + 1;
    EXPECT_EQ(span, (n == 1 ? 3 : 11) * scale) << "caption " << n;
  }
}

TEST(ImageGrid, LongCaptionsAreCutToTheCell) {
  const GrayImage grid = image_grid({Digit{}}, {"8888888888888"}, 1, 1);
  for (std::int64_t r = 0; r < grid.height; ++r) {
    EXPECT_EQ(grid.at(r, 0), 255);
    EXPECT_EQ(grid.at(r, grid.width - 1), 255);
  }
}

TEST(ImageGrid, RejectsBadArguments) {
  const std::vector<Digit> digits(2, Digit{});
  EXPECT_THROW(image_grid(digits, {"a"}, 1, 1), std::invalid_argument);
  EXPECT_THROW(image_grid(digits, {"a", "b"}, 0, 1), std::invalid_argument);
  EXPECT_THROW(image_grid(digits, {"a", "b"}, 1, 0), std::invalid_argument);
  EXPECT_THROW(image_grid({}, {}, 1, 1), std::invalid_argument);
}

}  // namespace
}  // namespace nn
