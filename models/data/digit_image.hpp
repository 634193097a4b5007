// Digit images: the one place where PNG and PGM files are decoded and encoded, where an arbitrary
// picture of a digit is turned into an MNIST-like 28x28 image, and where digits are drawn in a
// captioned grid. `lenet predict`, `lenet eval` and the web server all go through here, so a digit
// is preprocessed the same way wherever it comes from.
//
// Images are untrusted input: sizes are checked before anything is allocated, and every problem is
// an ImageError whose message is one line, "<name>: <problem>".
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/tensor.hpp"
#include "models/nn/weights.hpp"

namespace nn {

/// An image that cannot be used (not a PNG or PGM, malformed, truncated, too large). The message is
/// one line, "<name>: <problem>"; a server answers it with 400, not 500.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Largest width or height a decoder accepts (checked before allocating): 8192 x 8192 floats is
/// 256 MiB, the most one image may cost.
inline constexpr std::int64_t kMaxDecodedSide = 8192;

/// A grayscale image: 0 = black, 255 = white, row-major [height, width].
struct GrayImage {
  std::int64_t width = 0, height = 0;
  std::vector<float> pixels;

  float at(std::int64_t row, std::int64_t col) const {
    return pixels[static_cast<std::size_t>(row * width + col)];
  }
};

/// Any PNG (every bit depth and color type, palette, tRNS, alpha): color becomes luminance,
/// transparency is composited over white (a digit drawn on a transparent canvas reads as ink on
/// paper), 16-bit samples without gAMA/sRGB are taken as sRGB-encoded like 8-bit ones.
GrayImage decode_png(std::string_view bytes, std::string_view name = "image");

/// Netpbm graymap, plain (P2) or raw (P5), maxval 1..65535 (raw: 2 big-endian bytes per sample
/// above 255); samples are scaled to 0..255. Only the first image of a multi-image file is read.
GrayImage decode_pgm(std::string_view bytes, std::string_view name = "image");

/// decode_png or decode_pgm, chosen by the file's signature (not by its name).
GrayImage decode_image(std::string_view bytes, std::string_view name = "image");

/// An 8-bit grayscale PNG; pixels are rounded and clamped to 0..255. Throws std::invalid_argument
/// for an empty image or a pixel count that does not match width x height.
std::string encode_png(const GrayImage& image);

/// A preprocessed digit: 28x28 row-major, 0 = background, 255 = full ink, like an MNIST image.
using Digit = std::array<float, 28 * 28>;

/// MNIST's own recipe, applied to any picture of one digit:
///  1. the background level is the median of the border pixels; a light background (> 127.5) is
///     inverted so ink is high, then the background level is subtracted and the ink stretched so
///     its maximum is 255;
///  2. the ink's bounding box is the set of pixels above 10% of that maximum;
///  3. the image is scaled by 20 / (the box's longer side), keeping the aspect ratio, with
///     area-averaging (each output pixel is the mean of the input area it covers: anti-aliased
///     like MNIST's grey levels);
///  4. it is placed in the 28x28 frame, shifted by whole pixels so that its centre of mass lands
///     nearest (row 14, column 14) in pixel-index coordinates, where MNIST's digits have theirs;
///     whatever falls outside the frame is clipped.
/// An image with no ink (its contrast is below kMinInkContrast) gives all zeros: see is_blank.
/// Throws std::invalid_argument for an inconsistent image (pixel count, size) or a NaN/inf pixel.
/// An MNIST test digit goes through almost unchanged.
Digit preprocess_digit(const GrayImage& image);

/// Grey levels of contrast below which an image counts as blank rather than as a faint digit.
inline constexpr float kMinInkContrast = 8.0F;

/// True when every pixel is 0, as preprocess_digit returns for an image without ink.
bool is_blank(const Digit& digit);

/// x = (pixel / 255 - mean) / std, as a float32 tensor [1, 1, 28, 28]: a model's input.
ag::Tensor to_input_tensor(const Digit& digit, const Normalization& normalization);

/// decode_image then preprocess_digit: the whole path from a file's bytes to a digit.
Digit digit_from_image_bytes(std::string_view bytes, std::string_view name = "image");

/// Draws digits in a grid, `columns` per row, each as a 28x28 tile in MNIST's own look (white ink
/// on black) enlarged `scale` times, with its caption in dark text on white beneath it. Layout,
/// in output pixels, with g = gap(scale) and h = caption_height(scale):
///   tile = 28 * scale;  cell = (tile + 2g) wide, (tile + h + 2g) tall;
///   width = min(columns, N) * cell width;  height = ceil(N / columns) * cell height.
/// Captions use a 3x5 bitmap font (digits, A-Z, a-z drawn as capitals, and  > : . - + = / % ? #
/// ( ) space); other characters are drawn as '?', and a caption too long for its cell is cut.
/// Throws std::invalid_argument if digits is empty, the counts of digits and captions differ,
/// columns < 1 or scale is outside [1, 16].
GrayImage image_grid(const std::vector<Digit>& digits, const std::vector<std::string>& captions,
                     int columns, int scale);

/// The grid's spacing around each tile and the height of its caption band, for a given scale.
std::int64_t image_grid_gap(int scale);
std::int64_t image_grid_caption_height(int scale);

}  // namespace nn
