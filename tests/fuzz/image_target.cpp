// Fuzz target: PNG/PGM decoding and the MNIST-style preprocessing behind `lenet predict` and the
// web server. See targets.hpp.
#include <zlib.h>

#include <cmath>
#include <string>
#include <string_view>

#include "models/data/digit_image.hpp"
#include "tests/fuzz/targets.hpp"

namespace fuzz {

namespace {

/// Sets each complete chunk's CRC to the CRC of its type and data, so that a mutation inside a
/// chunk is judged by the decoder rather than stopped at the checksum.
void fix_png_crcs(std::string& png) {
  std::size_t at = 8;  // after the signature
  while (at + 12 <= png.size()) {
    const auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(png[i])); };
    const std::uint32_t length = (byte(at) << 24) | (byte(at + 1) << 16) | (byte(at + 2) << 8) | byte(at + 3);
    if (length > png.size() - at - 12) return;
    const auto* typed = reinterpret_cast<const Bytef*>(png.data() + at + 4);
    const auto crc = static_cast<std::uint32_t>(::crc32(0, typed, static_cast<uInt>(4 + length)));
    for (int k = 0; k < 4; ++k) png[at + 8 + length + static_cast<std::size_t>(k)] = static_cast<char>(crc >> (24 - 8 * k));
    at += 12 + length;
  }
}

bool in_byte_range(float v) { return std::isfinite(v) && v >= 0.0F && v <= 255.0F; }

}  // namespace

Outcome image_input(Input input) {
  if (input.empty()) return Outcome::Refused;
  std::string bytes(reinterpret_cast<const char*>(input.data()) + 1, input.size() - 1);
  if ((input[0] & 1) != 0 && bytes.starts_with("\x89PNG")) fix_png_crcs(bytes);

  nn::GrayImage image;
  try {
    image = nn::decode_image(bytes, "fuzz.img");
  } catch (const nn::ImageError& error) {
    const std::string message = error.what();
    check(message.rfind("fuzz.img: ", 0) == 0 && message.find('\n') == std::string::npos, "image",
          "error message is not one line naming the image: " + message);
    return Outcome::Refused;
  }
  check(image.width >= 1 && image.height >= 1 && image.width <= nn::kMaxDecodedSide &&
            image.height <= nn::kMaxDecodedSide,
        "image", "decoded size out of range");
  check(image.pixels.size() == static_cast<std::size_t>(image.width * image.height), "image",
        "pixel count differs from width x height");
  for (float v : image.pixels) check(in_byte_range(v), "image", "decoded pixel outside [0, 255]");

  // Small images make the round trip through the PNG encoder: 8-bit grey keeps every rounded value.
  if (image.width * image.height <= 1 << 16) {
    const nn::GrayImage again = nn::decode_png(nn::encode_png(image), "again");
    check(again.width == image.width && again.height == image.height, "image", "round trip changed the size");
    for (std::size_t i = 0; i < image.pixels.size(); ++i)
      check(again.pixels[i] == std::round(image.pixels[i]), "image", "round trip changed a pixel");
  }

  const nn::Digit digit = nn::preprocess_digit(image);
  for (float v : digit) check(in_byte_range(v), "image", "preprocessed pixel outside [0, 255]");
  const ag::Tensor tensor = nn::to_input_tensor(digit, nn::Normalization{});
  for (std::int64_t i = 0; i < tensor.numel(); ++i)
    check(std::isfinite(tensor.data<float>()[i]), "image", "model input is not finite");
  return Outcome::Read;
}

}  // namespace fuzz
