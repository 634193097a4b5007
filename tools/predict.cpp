// lenet predict: classify pictures of digits (PNG or PGM) with saved LeNet-5 weights. Each image is
// decoded and preprocessed the MNIST way (models/digit_image), exactly as the web server does.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "autograd/file.hpp"
#include "models/digit_image.hpp"
#include "models/lenet.hpp"
#include "models/weights.hpp"
#include "tools/cli.hpp"

namespace cli {

int predict(const std::vector<std::string>& args) {
  std::string weights = "models/lenet5.safetensors";
  std::vector<std::string> images;
  po::options_description options("options");
  options.add_options()("weights", po::value(&weights)->default_value(weights),
                        "weights file (safetensors)")(
      "json", "print one JSON document instead of one line per image")(
      "probabilities", "also print all ten probabilities on each line")(
      "image", po::value(&images), "a PNG or PGM picture of one digit (repeatable; positional)");
  po::positional_options_description positional;
  positional.add("image", -1);
  po::variables_map vm;
  if (!parse("predict", "[--weights FILE] [--json] [--probabilities] IMAGE...", options, args, vm,
             &positional))
    return 0;
  if (images.empty()) throw UsageError("no images given");
  weights = resolve_path(vm, "weights");
  const bool json = vm.count("json") > 0, all_probabilities = vm.count("probabilities") > 0;

  ag::Generator gen(0);
  nn::LeNet5 model(gen);
  const nn::Normalization normalization = nn::normalization_from(nn::load_weights(model, weights));
  model.eval();

  // Every image is read and checked before anything is printed, so a bad one among many gives one
  // error line and no partial output.
  std::vector<nn::Digit> digits;
  for (const std::string& path : images) {
    if (std::filesystem::is_directory(path)) throw nn::ImageError(path + ": is a directory");
    digits.push_back(nn::digit_from_image_bytes(ag::read_file(path), path));
    if (nn::is_blank(digits.back()))
      throw nn::ImageError(path + ": no ink found (the image is one flat colour)");
  }

  nlohmann::json predictions = nlohmann::json::array();
  for (std::size_t i = 0; i < images.size(); ++i) {
    const nn::Prediction p =
        nn::classify(model, nn::to_input_tensor(digits[i], normalization)).front();
    if (json) {
      predictions.push_back(
          {{"file", images[i]}, {"digit", p.digit}, {"probabilities", p.probabilities}});
      continue;
    }
    std::cout << images[i] << ": " << p.digit << " (p=" << std::fixed << std::setprecision(3)
              << p.probabilities[static_cast<std::size_t>(p.digit)] << ")";
    if (all_probabilities) {
      std::cout << "  [";
      for (int k = 0; k < 10; ++k)
        std::cout << (k ? " " : "") << k << ":" << p.probabilities[static_cast<std::size_t>(k)];
      std::cout << "]";
    }
    std::cout << '\n';
  }
  if (json)
    std::cout << nlohmann::json{{"weights", weights}, {"predictions", predictions}}.dump(2) << '\n';
  return 0;
}

}  // namespace cli
