// lenet graph: a model's computation graph through the engine's DOT export.
#include <filesystem>
#include <iostream>
#include <optional>

#include "autograd/dot.hpp"
#include "models/registry.hpp"
#include "ops/fusion/fusion.hpp"
#include "tools/cli.hpp"

namespace cli {

int graph(const std::vector<std::string>& args) {
  const nn::ModelEntry& entry = nn::find_model(model_option(args));
  po::options_description options("options");
  add_model_option(options);
  std::string out, format;
  std::int64_t batch = 1;
  options.add_options()
      ("output,o", po::value(&out)->required(), "file to write")
      ("format", po::value(&format), "dot, svg or png (default: from the file's extension)")
      ("backward", "label each op with the backward it runs")
      ("loss", "include the model's loss (the graph that backward walks)")
      ("no-fusion", "record the ops one by one, as the model script writes them, instead of fused")
      ("batch", po::value(&batch)->default_value(1), "batch size shown in the shapes");
  po::variables_map vm;
  if (!parse("graph", "[--model NAME] -o FILE [--format dot|svg|png] [--backward] [--loss] [--no-fusion]", options, args, vm))
    return 0;
  if (format.empty()) {
    const std::string extension = std::filesystem::path(out).extension().string();
    format = extension.empty() ? extension : extension.substr(1);
  }
  if (format != "dot" && format != "svg" && format != "png")
    throw UsageError("--format must be dot, svg or png, got '" + format + "'");
  require_positive("batch", static_cast<double>(batch));

  ag::Generator gen(0);
  const std::unique_ptr<nn::Model> model = entry.make(gen);
  std::optional<ag::NoFusionGuard> unfused;
  if (vm.count("no-fusion")) unfused.emplace();
  const ag::AttributeGuard attributes;  // each op's box shows them: kernel=2 stride=2
  ag::Variable input(ag::Tensor(model->input_shape(batch)), false, "input");
  ag::Variable output = (*model)(input);
  if (vm.count("loss")) {
    const std::vector<std::int64_t> targets(static_cast<std::size_t>(batch), 0);
    output = model->loss(output, targets);
  }
  ag::DotOptions dot_options{.title = entry.name, .show_backward = vm.count("backward") > 0};
  ag::write_graph(output, out, format, dot_options);
  std::cout << "wrote " << out << '\n';
  return 0;
}

}  // namespace cli
