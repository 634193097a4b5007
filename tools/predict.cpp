// lenet predict: classify pictures of digits (PNG or PGM) with a model's saved weights. Each image is
// decoded and preprocessed the MNIST way (models/digit_image), exactly as the web server does.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "autograd/file.hpp"
#include "models/data/digit_image.hpp"
#include "tools/cli.hpp"

namespace cli {

int predict(const std::vector<std::string>& args) {
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  std::string weights = default_weights(entry);
  std::vector<std::string> images;
  po::options_description options("options");
  add_model_option(options);
  options.add_options()("weights", po::value(&weights)->default_value(weights),
                        "weights file (safetensors)")(
      "json", "print one JSON document instead of one line per image")(
      "probabilities", "also print all ten probabilities on each line")(
      "image", po::value(&images), "a PNG or PGM picture of one digit (repeatable; positional)");
  po::positional_options_description positional;
  positional.add("image", -1);
  po::variables_map vm;
  if (!parse("predict", "[--model NAME] [--weights FILE] [--json] [--probabilities] IMAGE...", options, args, vm,
             &positional))
    return 0;
  if (images.empty()) throw UsageError("no images given");
  weights = resolve_path(vm, "weights");
  const bool json = vm.count("json") > 0, all_probabilities = vm.count("probabilities") > 0;

  const LoadedModel loaded = load_model(entry, weights);
  const nn::Model& model = *loaded.model;
  loaded.model->eval();
  const nn::InputSpec& input = model.input();
  if (input.channels != 1 || input.height != 28 || input.width != 28)
    throw std::runtime_error(entry.name + " takes " + ag::shape_str(model.input_shape(1)) +
                             " inputs; lenet predict makes [1, 1, 28, 28] digits");

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
        nn::classify(model, nn::to_input_tensor(digits[i], input.normalization)).front();
    if (json) {
      predictions.push_back(
          {{"file", images[i]}, {"digit", p.digit}, {"probabilities", p.probabilities}});
      continue;
    }
    std::cout << images[i] << ": " << p.digit << " (p=" << std::fixed << std::setprecision(3)
              << p.probabilities[static_cast<std::size_t>(p.digit)] << ")";
    if (all_probabilities) {
      std::cout << "  [";
      for (std::size_t k = 0; k < p.probabilities.size(); ++k)
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
