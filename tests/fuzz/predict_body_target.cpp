// Fuzz target: the body parser of POST /api/predict and /api/features (web::image_from_body, JSON
// or PNG), followed by the preprocessing the server applies next. See targets.hpp.
#include <cmath>
#include <string>
#include <string_view>

#include "models/data/digit_image.hpp"
#include "tests/fuzz/targets.hpp"
#include "tools/server.hpp"

namespace fuzz {

Outcome predict_body_input(Input input) {
  if (input.empty()) return Outcome::Refused;
  // Byte 0 picks the Content-Type header the body arrives with.
  constexpr std::string_view kContentTypes[] = {"application/json", "image/png",
                                                " Application/JSON ; charset=utf-8", "text/plain"};
  const std::string_view content_type = kContentTypes[input[0] % std::size(kContentTypes)];
  const std::string_view body(reinterpret_cast<const char*>(input.data()) + 1, input.size() - 1);

  nn::GrayImage image;
  try {
    image = web::image_from_body(body, content_type);
  } catch (const web::HttpError& error) {
    const std::string message = error.what();
    check(error.status == 400 || error.status == 415, "predict_body",
          "status " + std::to_string(error.status) + " for a client mistake");
    check(error.status == 415 || content_type != "text/plain", "predict_body", "text/plain accepted as an image");
    check(!message.empty() && message.find('\n') == std::string::npos, "predict_body",
          "error message is not one line: " + message);
    return Outcome::Refused;
  }
  check(content_type != "text/plain", "predict_body", "a text/plain body was accepted");
  check(image.width >= 1 && image.height >= 1 && image.width <= 2048 && image.height <= 2048, "predict_body",
        "accepted an image of " + std::to_string(image.width) + " x " + std::to_string(image.height));
  check(image.pixels.size() == static_cast<std::size_t>(image.width * image.height), "predict_body",
        "pixel count differs from width x height");
  for (float v : image.pixels)
    check(std::isfinite(v) && v >= 0.0F && v <= 255.0F, "predict_body", "pixel outside [0, 255]");
  const nn::Digit digit = nn::preprocess_digit(image);
  for (float v : digit)
    check(std::isfinite(v) && v >= 0.0F && v <= 255.0F, "predict_body", "preprocessed pixel outside [0, 255]");
  return Outcome::Read;
}

}  // namespace fuzz
