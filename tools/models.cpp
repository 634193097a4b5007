// lenet models: the registered models, with their parameter counts and input shapes.
#include <iomanip>
#include <iostream>

#include "tools/cli.hpp"

namespace cli {

namespace {
// "[N, 1, 28, 28]": a batch of the model's inputs.
std::string input_shape(const nn::Model& model) {
  const nn::InputSpec& in = model.input();
  return "[N, " + std::to_string(in.channels) + ", " + std::to_string(in.height) + ", " +
         std::to_string(in.width) + "]";
}
}  // namespace

int models(const std::vector<std::string>& args) {
  po::options_description options("options");
  po::variables_map vm;
  if (!parse("models", "", options, args, vm)) return 0;
  std::cout << std::left << std::setw(14) << "model" << std::right << std::setw(12) << "parameters"
            << std::setw(13) << "connections" << "  " << std::left << std::setw(17) << "input" << "description\n";
  for (const nn::ModelEntry& entry : nn::registered_models()) {
    ag::Generator gen(0);
    const std::unique_ptr<nn::Model> model = entry.make(gen);
    const std::int64_t connections = model->connections();
    std::cout << std::left << std::setw(14) << entry.name << std::right << std::setw(12)
              << model->parameter_count() << std::setw(13)
              << (connections > 0 ? std::to_string(connections) : std::string("-")) << "  " << std::left
              << std::setw(17)
              << input_shape(*model) << entry.description << '\n';
  }
  return 0;
}

}  // namespace cli
